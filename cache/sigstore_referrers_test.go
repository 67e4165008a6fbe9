package cache

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/policy"
)

// pushImage writes a random image to repo:tag and returns its descriptor.
func pushImage(t *testing.T, repo, tag string) v1.Descriptor {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(repo + ":" + tag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// pushReferrer attaches to subject, through referrers (the API, or the
// tag-scheme fallback index when the registry has none), a manifest of
// artifact type artifactType with the given layers, as cosign does.
func pushReferrer(t *testing.T, repo string, subject v1.Descriptor, artifactType string, layers ...mutate.Addendum) {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	var err error
	for _, l := range layers {
		if img, err = mutate.Append(img, l); err != nil {
			t.Fatal(err)
		}
	}
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	img = mutate.Subject(img, subject).(v1.Image)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewDigest(repo + "@" + d.String())
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

// sigLayer is a simple-signing layer: payload for (repo, d) signed by k.
func sigLayer(t *testing.T, k *ecdsa.PrivateKey, repo string, d digest.Digest) mutate.Addendum {
	p := cosignPayload(repo, d)
	return mutate.Addendum{
		Layer:       static.NewLayer(p, cosign.PayloadMediaType),
		Annotations: map[string]string{cosign.SignatureAnn: base64.StdEncoding.EncodeToString(ecSign(t, k, p))},
	}
}

// TestSigstoreReferrers runs the source against registries (in memory, on
// loopback) with and without the OCI 1.1 referrers API: signatures
// attached to image digests through referrers are found for the digests
// of images the node has, for a pulled digest, and for the digests the
// referrers tag scheme names; only those that verify, for that digest and
// repository, are cached; a registry that stops serving them does not
// remove them.
func TestSigstoreReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrers API %v", api), func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(api)))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			repo := host + "/apps/web"
			ka, a := testKey(t)
			kb, _ := testKey(t)

			wanted, pulled, unsigned, byB, misplaced, otherSubject := pushImage(t, repo, "wanted"), pushImage(t, repo, "pulled"), pushImage(t, repo, "unsigned"), pushImage(t, repo, "by-b"), pushImage(t, repo, "misplaced"), pushImage(t, repo, "other-subject")
			dg := func(d v1.Descriptor) digest.Digest { return digest.Digest(d.Digest.String()) }
			pushReferrer(t, repo, wanted, cosign.SigArtifactType, sigLayer(t, ka, repo, dg(wanted)))
			pushReferrer(t, repo, pulled, cosign.SigArtifactType, sigLayer(t, ka, repo, dg(pulled)))
			pushReferrer(t, repo, byB, cosign.SigArtifactType, sigLayer(t, kb, repo, dg(byB)))
			// A valid signature of another digest, attached to this one.
			pushReferrer(t, repo, misplaced, cosign.SigArtifactType, sigLayer(t, ka, repo, dg(wanted)))
			// A bundle manifest that names another subject than the
			// digest it is listed under is refused before verification.
			arts, problems := CosignArtifacts(bundleManifest(t, wanted), dg(otherSubject), nil)
			if len(arts) != 0 || len(problems) != 1 || !strings.Contains(problems[0].Error(), "refers to another image") {
				t.Errorf("bundle manifest for another subject: %v, %v", arts, problems)
			}

			src := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: mustPatterns(t, host+"/**"), Verifier: &cosign.Verifier{Keys: []cosign.Key{a}}}
			src.WantDigest(repo, dg(wanted), dg(unsigned), dg(byB), dg(misplaced))
			_, err := src.Sync(context.Background(), time.Now())
			if err == nil || !strings.Contains(err.Error(), "signs digest") {
				t.Errorf("Sync: %v, want the misplaced signature reported", err)
			}
			if api {
				// The tag scheme's fallback tags are the registry's own
				// business when it has the API: nothing else was found.
				if got, want := signedDigests(src.Index(), repo), map[digest.Digest][]string{dg(wanted): {a.ID}}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("after Sync: %v, want %v", got, want)
				}
			} else {
				// Without the API, the fallback tags (sha256-<hex>) name
				// the signed digests: the pulled one is found by listing.
				if got, want := signedDigests(src.Index(), repo), map[digest.Digest][]string{dg(wanted): {a.ID}, dg(pulled): {a.ID}}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("after Sync: %v, want %v", got, want)
				}
			}

			// At a pull, the pulled digest's referrers are asked.
			fresh := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: src.Repositories, Verifier: src.Verifier}
			if err := fresh.SyncPulledDigest(context.Background(), repo, dg(pulled), time.Now()); err != nil {
				t.Errorf("SyncPulledDigest: %v", err)
			}
			if got := signedDigests(fresh.Index(), repo); len(got[dg(pulled)]) != 1 {
				t.Errorf("after the pull of %s: %v", dg(pulled), got)
			}

			// The registry no longer serves the signatures: what verified
			// stays, in memory and on disk.
			srv.Close()
			if _, err := src.SyncRepo(context.Background(), repo); err == nil {
				t.Errorf("SyncRepo with the registry gone: no error")
			}
			re := &SigstoreSource{SourceName: "cosign", Dir: src.Dir, Repositories: src.Repositories, Verifier: src.Verifier}
			si, err := re.Load()
			if err != nil {
				t.Fatal(err)
			}
			if got := signedDigests(si, repo); len(got[dg(wanted)]) != 1 {
				t.Errorf("loaded %v", got)
			}
		})
	}
}

// bundleManifest returns a Sigstore bundle manifest attached to subject
// (its layer, a bundle, is never read when the subject is wrong).
func bundleManifest(t *testing.T, subject v1.Descriptor) []byte {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(`{}`), cosign.BundleMediaType)})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, cosign.BundleMediaType)
	img = mutate.Subject(img, subject).(v1.Image)
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigstoreReferrerBounds: the digests asked per round are bounded
// (a pulled digest is always asked), and a registry's oversized response
// is refused.
func TestSigstoreReferrerBounds(t *testing.T) {
	src := &SigstoreSource{SourceName: "cosign", Repositories: mustPatterns(t, "registry.corp.example/**"), Verifier: &cosign.Verifier{}}
	repo := "registry.corp.example/apps/web"
	var many []digest.Digest
	for i := range maxWantedDigests + 10 {
		many = append(many, digest.FromString(fmt.Sprint(i)))
	}
	src.WantDigest(repo, many...)
	if n := len(src.wantedDigests[repo]); n != maxWantedDigests {
		t.Errorf("%d wanted digests kept, want %d", n, maxWantedDigests)
	}
	pulled := digest.FromString("pulled")
	ask, err := src.referrerDigests(repo, nil, []digest.Digest{pulled})
	if err == nil || len(ask) != maxReferrerDigests+1 || ask[0] != pulled {
		t.Errorf("asked %d digests (first %v), error %v", len(ask), ask[0], err)
	}

	// A response larger than maxSigResponse is not read whole.
	big := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer big.Close()
	host := strings.TrimPrefix(big.URL, "http://")
	layer := static.NewLayer(make([]byte, maxSigResponse+1), types.MediaType("application/octet-stream"))
	r, _ := name.NewRepository(host + "/apps/web")
	if err := remote.WriteLayer(r, layer); err != nil {
		t.Fatal(err)
	}
	ld, _ := layer.Digest()
	sz, _ := layer.Size()
	_, err = remoteBlobs(r, []remote.Option{remote.WithTransport(limitBodies(remote.DefaultTransport))})(v1.Descriptor{Digest: ld, Size: sz}, maxSigResponse*2)
	if err == nil || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
		t.Errorf("oversized blob: %v", err)
	}
}

// sigstoreStore opens a store whose policy has one sigstore source over
// host/** whose rule names the public key of k.
func sigstoreStore(t *testing.T, host string, k *ecdsa.PrivateKey) *Store {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`version = 1
[daemon]
cache_dir = %q
[[source]]
name = "cosign"
kind = "sigstore"
repositories = [%q]
[[rule]]
images = [%q]
action = "verify"
source = "cosign"
keys = [%q]
`, filepath.Join(dir, "cache"), host+"/**", host+"/**", pub)
	if err := os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(filepath.Join(dir, "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Registry = nil
	return s
}

// TestExportImportSigstore: `cache export` carries a sigstore source's
// signatures; import verifies each again with the node's own keys, so a
// bundle altered on the way, or signed by a key the node does not name,
// installs nothing.
func TestExportImportSigstore(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/apps/web"
	ka, _ := testKey(t)
	tagged, attached := digest.FromString("tagged"), pushImage(t, repo, "attached")
	pushSignatures(t, repo, tagged, [2][]byte{cosignPayload(repo, tagged), ecSign(t, ka, cosignPayload(repo, tagged))})
	pushReferrer(t, repo, attached, cosign.SigArtifactType, sigLayer(t, ka, repo, digest.Digest(attached.Digest.String())))

	online := sigstoreStore(t, host, ka)
	online.WantImage(repo, digest.Digest(attached.Digest.String()))
	if res, _, err := online.SyncSource(t.Context(), online.Sources()[0], time.Now()); err != nil || !res.Changed {
		t.Fatalf("sync: %v, %+v", err, res)
		t.Fatal(err)
	}
	var buf bytes.Buffer
	lines, err := online.ExportTo(&buf, nil, time.Now())
	if err != nil || !strings.Contains(strings.Join(lines, "\n"), "cosign: sigstore, 1 repositories, 2 signatures") {
		t.Fatalf("export: %v %v", lines, err)
	}
	srv.Close()

	signed := func(s *Store) map[digest.Digest][]string {
		ix, errs := s.LoadIndex()
		if len(errs) > 0 {
			t.Fatalf("load: %v", errs)
		}
		return signedDigests(ix.Source("cosign"), repo)
	}
	offline := sigstoreStore(t, host, ka)
	lines, err = offline.ImportFrom(bytes.NewReader(buf.Bytes()), time.Now())
	if err != nil || !strings.Contains(strings.Join(lines, "\n"), "cosign: 2 of 2 signatures new") {
		t.Fatalf("import: %v %v", lines, err)
	}
	if got := signed(offline); len(got) != 2 {
		t.Errorf("after import: %v", got)
	}

	// Altered on the way: one signature byte flipped.
	var ex Export
	if err := json.Unmarshal(buf.Bytes(), &ex); err != nil {
		t.Fatal(err)
	}
	ex.Sources["cosign"].Sigstore[0].Signatures[0].Signature[3] ^= 1
	altered, _ := json.Marshal(&ex)
	other := sigstoreStore(t, host, ka)
	if _, err := other.ImportFrom(bytes.NewReader(altered), time.Now()); err == nil {
		t.Errorf("import of an altered signature: no error")
	}
	if got := signed(other); len(got) != 1 {
		t.Errorf("after importing an altered signature: %v, want only the intact one", got)
	}

	// A node whose policy names another key keeps none.
	kb, _ := testKey(t)
	another := sigstoreStore(t, host, kb)
	if _, err := another.ImportFrom(bytes.NewReader(buf.Bytes()), time.Now()); err != nil {
		t.Errorf("import on a node with another key: %v", err)
	}
	if got := signed(another); len(got) != 0 {
		t.Errorf("another key's node cached %v", got)
	}
}
