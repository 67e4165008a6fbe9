package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/test/harness"
	"github.com/trustd/trustd/verify"
)

// cosignSigImage is a simple-signing signature manifest of repo@d by k,
// as cosign writes it (config media type artifactType when set).
func cosignSigImage(t *testing.T, k *ecdsa.PrivateKey, repo string, d v1.Hash, artifactType string) v1.Image {
	t.Helper()
	payload := testsigstore.SimpleSigningPayload(repo, digest.Digest(d.String()))
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer(payload, cosign.PayloadMediaType),
		Annotations: map[string]string{cosign.SignatureAnn: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if artifactType != "" {
		img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	}
	return img
}

// TestVerifyCosignArchive: `trustd verify --archive` on OCI layouts as
// `cosign save` writes them (a directory, and its tar): the image is
// judged with the signatures the layout carries — a tag-scheme signature
// manifest listed in index.json, or a signature attached as a referrer
// among the blobs only — verified with the rule's key; an unsigned or
// another key's image is denied; with --import the signatures reach the
// cache, and the image is then allowed from the cache alone.
func TestVerifyCosignArchive(t *testing.T) {
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	cfg := filepath.Join(dir, "policy.toml")
	os.WriteFile(cfg, fmt.Appendf(nil, `version = 1
[daemon]
cache_dir = %q
control_socket = %q
[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["registry.corp.example/**"]
[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "cosign"
keys = [%q]
[[rule]]
images = ["**"]
action = "deny"
`, filepath.Join(dir, "cache"), filepath.Join(dir, "none.sock"), pub), 0o600)
	repo := "registry.corp.example/apps/web"

	// save writes a layout as cosign save does: the image (kind image)
	// and, signed by sigKey if set, its tag-scheme signature manifest
	// (kind sigs) or a referrer (in the blobs, not in index.json).
	save := func(sigKey *ecdsa.PrivateKey, tagScheme bool) (string, v1.Hash) {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		out := filepath.Join(t.TempDir(), "layout")
		p, err := layout.Write(out, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"kind": "dev.cosignproject.cosign/image"})); err != nil {
			t.Fatal(err)
		}
		if sigKey == nil {
			return out, d
		}
		if tagScheme {
			if err := p.AppendImage(cosignSigImage(t, sigKey, repo, d, ""), layout.WithAnnotations(map[string]string{"kind": "dev.cosignproject.cosign/sigs"})); err != nil {
				t.Fatal(err)
			}
			return out, d
		}
		desc, _ := layout.Path(out).ImageIndex()
		im, _ := desc.IndexManifest()
		ref := mutate.Subject(cosignSigImage(t, sigKey, repo, d, cosign.SigArtifactType), im.Manifests[0]).(v1.Image)
		if err := p.WriteImage(ref); err != nil { // blobs only, as cosign save leaves referrers
			t.Fatal(err)
		}
		return out, d
	}
	verifyArchive := func(path string, extra ...string) ([]verify.Decision, string, int) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"trustd", "--config", cfg, "verify", "--json", "--archive", path, "--name", repo}, extra...), nil, &stdout, &stderr)
		var out []verify.Decision
		dec := json.NewDecoder(&stdout)
		for {
			var d verify.Decision
			if dec.Decode(&d) != nil {
				break
			}
			out = append(out, d)
		}
		return out, stderr.String(), code
	}
	verifyRef := func(ref string) int {
		var stdout, stderr bytes.Buffer
		return run([]string{"trustd", "--config", cfg, "verify", ref}, nil, &stdout, &stderr)
	}

	tagDir, tagD := save(k, true)
	refDir, refD := save(k, false)
	unsignedDir, _ := save(nil, false)
	otherDir, _ := save(other, false)
	tarPath := filepath.Join(t.TempDir(), "layout.tar")
	harness.TarDir(t, refDir, tarPath)
	for _, c := range []struct {
		name, path string
		allowed    bool
	}{{"tag scheme (directory)", tagDir, true}, {"referrer (directory)", refDir, true}, {"referrer (tar)", tarPath, true}, {"unsigned", unsignedDir, false}, {"another key", otherDir, false}} {
		ds, stderr, code := verifyArchive(c.path)
		if len(ds) != 1 || ds[0].Allowed != c.allowed || (code == 0) != c.allowed {
			t.Errorf("%s: exit %d, %+v\n%s", c.name, code, ds, stderr)
		}
	}
	// Judged with the archive's signatures only: the cache has none yet.
	if code := verifyRef(repo + "@" + tagD.String()); code != 1 {
		t.Errorf("verify %s@%s before --import: exit %d", repo, tagD, code)
	}
	for _, p := range []string{tagDir, refDir} {
		if _, stderr, code := verifyArchive(p, "--import"); code != 0 || !strings.Contains(stderr, "1 new in the cache") {
			t.Errorf("--import %s: exit %d\n%s", p, code, stderr)
		}
	}
	for _, d := range []v1.Hash{tagD, refD} {
		if code := verifyRef(repo + "@" + d.String()); code != 0 {
			t.Errorf("verify %s@%s after --import: exit %d", repo, d, code)
		}
	}
}
