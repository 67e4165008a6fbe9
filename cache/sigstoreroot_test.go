package cache

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/test/harness"
)

const (
	testIssuer  = "https://token.ci.corp.example"
	testSubject = "https://ci.corp.example/apps/web/release.yml@refs/heads/main"
)

// virtualTrustedRoot returns a virtual Sigstore deployment and its
// trusted_root.json.
func virtualTrustedRoot(t *testing.T) (*ca.VirtualSigstore, []byte) {
	t.Helper()
	vs := testsigstore.New(t)
	return vs, testsigstore.TrustedRoot(t, vs, vs)
}

// pushKeyless pushes vs's keyless signature of digest d of repo in the tag
// scheme: certificate and Rekor bundle in the layer's annotations.
func pushKeyless(t *testing.T, vs *ca.VirtualSigstore, repo string, d digest.Digest) {
	t.Helper()
	sig := testsigstore.SignTag(t, vs, testSubject, testIssuer, cosignPayload(repo, d), time.Now().Add(time.Minute), true, false)
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: static.NewLayer(sig.Payload, cosign.PayloadMediaType),
		Annotations: map[string]string{
			cosign.SignatureAnn:   base64.StdEncoding.EncodeToString(sig.Signature),
			cosign.CertificateAnn: string(sig.Certificate),
			cosign.BundleAnn:      string(sig.RekorBundle),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(repo + ":sha256-" + d.Encoded() + ".sig")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
}

// sameRoot reports whether r holds the trusted root data encodes.
func sameRoot(t *testing.T, r *cosign.Root, data []byte) bool {
	t.Helper()
	tm, err := r.Material()
	if err != nil {
		t.Logf("Material: %v", err)
		return false
	}
	want, _ := cosign.ParseTrustedRoot(data)
	a, _ := tm.(*root.TrustedRoot).MarshalJSON()
	b, _ := want.MarshalJSON()
	return string(a) == string(b)
}

// TestSigstoreRootTUF: a sigstore source's trusted root distributed by a
// TUF repository is fetched, checked against the verified targets
// metadata and cached; keyless signatures then verify against it (and
// their signer's matches reach the index); a rolled back repository or a
// target of other bytes is refused and the root in use is kept; offline,
// a restart loads the cached root.
func TestSigstoreRootTUF(t *testing.T) {
	tuf := harness.NewTUFRepo(t)
	pinned, err := os.ReadFile(tuf.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	vs1, tr1 := virtualTrustedRoot(t)
	vs2, tr2 := virtualTrustedRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/apps/web"
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	pushKeyless(t, vs1, repo, d1)
	pushKeyless(t, vs2, repo, d2)

	dir := t.TempDir()
	newSource := func() *SigstoreSource {
		r := &SigstoreRoot{Root: &cosign.Root{}, TUF: &TUFSource{Name: "keyless", URL: tuf.URL(), Root: pinned, Dir: filepath.Join(dir, "trustroot"), Fetcher: &HTTPFetcher{Timeout: 5 * time.Second}}}
		id := cosign.Identity{ID: "ci", Issuer: testIssuer, Subject: testSubject}
		return &SigstoreSource{SourceName: "keyless", Dir: dir, Repositories: mustPatterns(t, host+"/**"), Root: r,
			Verifier: &cosign.Verifier{Identities: []cosign.Identity{id}, Root: r.Root}}
	}
	signer := testSubject + " (issuer " + testIssuer + ")"

	// Nothing published yet: no root, keyless signatures refused.
	src := newSource()
	src.Want(repo)
	if _, err := src.Sync(context.Background(), time.Now()); err == nil || !strings.Contains(err.Error(), "lists no trusted_root.json") {
		t.Errorf("Sync with no trusted root published: %v", err)
	}
	if _, err := src.Root.Root.Material(); err == nil {
		t.Error("a root is set before one was published")
	}

	// Version 1: vs1's root.
	tuf.PublishFile(t, TrustedRootTarget, tr1, tr1)
	res, err := src.Sync(context.Background(), time.Now())
	if !sameRoot(t, src.Root.Root, tr1) {
		t.Fatalf("after publishing the first root (Sync: %v): not in use", err)
	}
	if got := signedDigests(res.Index, repo); len(got) != 1 || !slices.Equal(got[d1], []string{signer}) {
		t.Errorf("signed digests %v, want %s by %s", got, d1, signer)
	}
	if m := res.Index.SignerMatches[signer]; !slices.Equal(m, []string{"ci"}) {
		t.Errorf("SignerMatches = %v", res.Index.SignerMatches)
	}
	saved := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(tuf.Dir(), "*.json"))
	for _, f := range files {
		saved[f], _ = os.ReadFile(f)
	}

	// Version 2: vs2's root replaces it. The cached signature under vs1's
	// CA and log, which the new root no longer lists, is verified again
	// and no longer counts; vs2's now does.
	tuf.PublishFile(t, TrustedRootTarget, tr2, tr2)
	res, err = src.Sync(context.Background(), time.Now())
	if !sameRoot(t, src.Root.Root, tr2) {
		t.Fatalf("after publishing the second root (Sync: %v): not in use", err)
	}
	if err == nil || !strings.Contains(err.Error(), "does not chain to a certificate authority of the trusted root") {
		t.Errorf("Sync after the root rotation: %v; want the signature under the old CA reported", err)
	}
	if got := signedDigests(res.Index, repo); len(got) != 1 || !slices.Equal(got[d2], []string{signer}) {
		t.Errorf("after the root rotation: signed digests %v, want only %s", got, d2)
	}

	// Offline: a restart loads the cached root (checked against the cached
	// metadata); a sync keeps it.
	tuf.Stop()
	re := newSource()
	si, err := re.Load()
	if err != nil || !sameRoot(t, re.Root.Root, tr2) {
		t.Fatalf("offline Load: %v", err)
	}
	if got := signedDigests(si, repo); len(got) != 1 || got[d2] == nil {
		t.Errorf("offline Load: signed digests %v, want %s", got, d2)
	}
	if _, err := re.Sync(context.Background(), time.Now()); err == nil || !sameRoot(t, re.Root.Root, tr2) {
		t.Errorf("offline Sync: %v; the cached root must stay in use", err)
	}
	if err := tuf.Start(); err != nil {
		t.Fatal(err)
	}
	// Back online, the root unchanged: a source started from the cache
	// does not take the root it loaded for a new one (which would verify
	// every cached signature again).
	if changed, err := re.Root.Sync(context.Background(), time.Now()); err != nil || changed {
		t.Errorf("Sync of the unchanged root after a restart: changed %v, %v", changed, err)
	}

	// Rolled back: the repository serves version 1's metadata and root.
	for f, b := range saved {
		os.WriteFile(f, b, 0o644)
	}
	os.WriteFile(filepath.Join(tuf.Dir(), "targets", TrustedRootTarget), tr1, 0o644)
	if _, err := src.Sync(context.Background(), time.Now()); err == nil || !strings.Contains(err.Error(), "version") || !strings.Contains(err.Error(), "TUF repository") || !sameRoot(t, src.Root.Root, tr2) {
		t.Errorf("rolled back repository: Sync = %v; want it refused and the second root kept", err)
	}

	// Other bytes than the targets metadata names: refused, and nothing
	// unverified is cached (a restart has no root rather than a wrong one).
	_, tr3 := virtualTrustedRoot(t)
	altered := slices.Clone(tr3)
	altered[len(altered)/2] ^= 1
	tuf.PublishFile(t, TrustedRootTarget, tr3, altered)
	if _, err := src.Sync(context.Background(), time.Now()); err == nil || !strings.Contains(err.Error(), "served other bytes") || !sameRoot(t, src.Root.Root, tr2) {
		t.Errorf("target of other bytes: Sync = %v; want it refused and the second root kept", err)
	}
	if err := newSource().Root.Load(); err == nil || !strings.Contains(err.Error(), "is not the one the verified targets metadata names") {
		t.Errorf("Load after a refused target: %v", err)
	}
	if cached, _ := os.ReadFile(filepath.Join(dir, "trustroot", TrustedRootTarget)); string(cached) != string(tr2) {
		t.Error("the refused target was cached")
	}
}

// TestOpenSigstoreTrustRoot: Open gives a sigstore source the policy's
// identities and its trust root: the pinned trusted_root.json parsed (an
// invalid one refused at open), or the TUF repository that distributes it.
func TestOpenSigstoreTrustRoot(t *testing.T) {
	dir := t.TempDir()
	_, tr := virtualTrustedRoot(t)
	os.WriteFile(filepath.Join(dir, "trusted_root.json"), tr, 0o600)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "root.json"), []byte(`{}`), 0o600)
	doc := `version = 1
[daemon]
cache_dir = "` + filepath.Join(dir, "cache") + `"
[[source]]
name = "pinned"
kind = "sigstore"
repositories = ["registry.corp.example/a/**"]
trusted_root = "TR"
[[source]]
name = "tuf"
kind = "sigstore"
repositories = ["registry.corp.example/b/**"]
url = "http://127.0.0.1:1/sigstore"
root = "root.json"
[[rule]]
images = ["registry.corp.example/a/**"]
action = "verify"
source = "pinned"
identities = [{ issuer = "` + testIssuer + `", subject_regexp = '.+@corp\.example' }]
[[rule]]
images = ["registry.corp.example/b/**"]
action = "verify"
source = "tuf"
identities = [{ issuer = "` + testIssuer + `", subject = "` + testSubject + `" }]
`
	open := func(tr string) (*Store, error) {
		path := filepath.Join(dir, "policy.toml")
		os.WriteFile(path, []byte(strings.Replace(doc, "TR", tr, 1)), 0o600)
		p, err := policy.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return Open(p, nil)
	}
	s, err := open("trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	pinned, tufSrc := s.Sources()[0].(*SigstoreSource), s.Sources()[1].(*SigstoreSource)
	if !sameRoot(t, pinned.Verifier.Root, tr) || pinned.Root.Root != pinned.Verifier.Root || len(pinned.Verifier.Identities) != 1 || pinned.Verifier.Identities[0].SubjectRegexp != `.+@corp\.example` {
		t.Errorf("pinned source: verifier %+v", pinned.Verifier)
	}
	if tufSrc.Root == nil || tufSrc.Root.TUF == nil || tufSrc.Root.TUF.URL != "http://127.0.0.1:1/sigstore/" || tufSrc.Verifier.Root != tufSrc.Root.Root {
		t.Errorf("TUF source: root %+v", tufSrc.Root)
	}
	if _, err := tufSrc.Verifier.Root.Material(); !errors.Is(err, cosign.ErrNoRoot) {
		t.Errorf("TUF source before any sync: Material = %v, want ErrNoRoot", err)
	}
	if _, err := open("bad.json"); err == nil || !strings.Contains(err.Error(), `source "pinned": trusted_root`) || !strings.Contains(err.Error(), "no certificate authority") {
		t.Errorf("Open with an invalid trusted root: %v", err)
	}
}
