package harness

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
)

// ociEmpty is the OCI empty descriptor's media type and content: the
// config of an artifact manifest.
const ociEmpty = "application/vnd.oci.empty.v1+json"

// AttachBundle attaches a Sigstore bundle to the image subject (its
// manifest's descriptor) in repo (host/path, a loopback registry) as cosign
// v3 `sign` does by default: an OCI manifest of artifact type the bundle
// media type, the empty config, the bundle as its one layer, subject as
// its subject, pushed by digest (the registry's referrers API then lists
// it). It returns the referrer manifest's digest.
func AttachBundle(t TB, repo string, subject v1.Descriptor, bundle []byte) digest.Digest {
	t.Helper()
	cfg := []byte("{}")
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  cosign.BundleMediaType,
		Config:        v1.Descriptor{MediaType: ociEmpty, Size: int64(len(cfg)), Digest: hashOf(cfg)},
		Layers:        []v1.Descriptor{{MediaType: cosign.BundleMediaType, Size: int64(len(bundle)), Digest: hashOf(bundle)}},
		Subject:       &subject,
		Annotations: map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": cosign.SignPredicateType,
		},
	}
	return pushArtifact(t, repo, "", mf, cfg, bundle)
}

// PushTagSignatures pushes keyless signatures of digest d of repo (host/path)
// in cosign's tag scheme: the manifest REPO:sha256-HEX.sig, one
// simple-signing layer per signature, with the signature, certificate,
// Rekor bundle and RFC 3161 timestamp in its annotations.
func PushTagSignatures(t TB, repo string, d digest.Digest, sigs ...testsigstore.TagSignature) {
	t.Helper()
	cfg := []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: hashOf(cfg)},
	}
	var blobs [][]byte
	for _, s := range sigs {
		ann := map[string]string{
			cosign.SignatureAnn:   base64.StdEncoding.EncodeToString(s.Signature),
			cosign.CertificateAnn: string(s.Certificate),
		}
		if len(s.RekorBundle) > 0 {
			ann[cosign.BundleAnn] = string(s.RekorBundle)
		}
		if len(s.Timestamp) > 0 {
			ann[cosign.TimestampAnn] = string(s.Timestamp)
		}
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: cosign.PayloadMediaType, Size: int64(len(s.Payload)), Digest: hashOf(s.Payload), Annotations: ann})
		blobs = append(blobs, s.Payload)
	}
	pushArtifact(t, repo, d.Algorithm().String()+"-"+d.Encoded()+".sig", mf, cfg, blobs...)
}

// pushArtifact pushes cfg and blobs, then mf under tag (by its digest when
// tag is ""), to repo on a plain-HTTP registry.
func pushArtifact(t TB, repo, tag string, mf v1.Manifest, cfg []byte, blobs ...[]byte) digest.Digest {
	t.Helper()
	r, err := name.NewRepository(repo, name.Insecure)
	if err != nil {
		t.Fatalf("push to %s: %v", repo, err)
	}
	base := fmt.Sprintf("http://%s/v2/%s", r.RegistryStr(), r.RepositoryStr())
	for _, b := range append([][]byte{cfg}, blobs...) {
		if err := pushBlob(base, digest.FromBytes(b).String(), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
			t.Fatalf("push to %s: %v", repo, err)
		}
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		t.Fatalf("push to %s: %v", repo, err)
	}
	d := digest.FromBytes(raw)
	if tag == "" {
		tag = d.String()
	}
	if err := httpDo(http.MethodPut, base+"/manifests/"+tag, string(mf.MediaType), bytes.NewReader(raw), http.StatusCreated); err != nil {
		t.Fatalf("push to %s: %v", repo, err)
	}
	return d
}

func hashOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}
