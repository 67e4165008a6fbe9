package cache

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
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

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/verify"
)

func cosignPayload(repo string, d digest.Digest) []byte {
	return testsigstore.SimpleSigningPayload(repo, d)
}

func testKey(t *testing.T) (*ecdsa.PrivateKey, cosign.Key) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	sum := sha256.Sum256(der)
	return k, cosign.Key{ID: fmt.Sprintf("%x", sum)[:16], Public: &k.PublicKey}
}

func ecSign(t *testing.T, k *ecdsa.PrivateKey, payload []byte) []byte {
	t.Helper()
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// pushSignatures writes the signature manifest of digest d in repo (cosign's
// tag scheme), one layer per (payload, signature).
func pushSignatures(t *testing.T, repo string, d digest.Digest, sigs ...[2][]byte) {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for _, s := range sigs {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(s[0], cosign.PayloadMediaType),
			Annotations: map[string]string{cosign.SignatureAnn: base64.StdEncoding.EncodeToString(s[1])},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tag, err := name.NewTag(repo + ":sha256-" + d.Encoded() + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
}

func signedDigests(si *verify.SourceIndex, repo string) map[digest.Digest][]string {
	out := map[digest.Digest][]string{}
	r := si.Repo(repo)
	if r == nil {
		return out
	}
	for _, rt := range r.Tags {
		for k, tg := range rt {
			out[tg.Digest] = append(out[tg.Digest], k)
		}
	}
	return out
}

// TestSigstoreSource runs the source against a real registry (in memory,
// on loopback): only signatures that verify with a configured key, over a
// payload for that digest and repository, are cached; hostile data later
// served never removes them; the cache is verified again at load.
func TestSigstoreSource(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/apps/web"
	other := host + "/apps/other"
	ka, a := testKey(t)
	kb, _ := testKey(t)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed := cosign.Key{ID: "ed25519key000000", Public: edPriv.Public()}

	signed, byB, forOther, otherRepo, byEd, tampered := digest.FromString("signed"), digest.FromString("by-b"), digest.FromString("for-other"), digest.FromString("other-repo"), digest.FromString("ed"), digest.FromString("tampered")
	pushSignatures(t, repo, signed, [2][]byte{cosignPayload(repo, signed), ecSign(t, ka, cosignPayload(repo, signed))})
	pushSignatures(t, repo, byB, [2][]byte{cosignPayload(repo, byB), ecSign(t, kb, cosignPayload(repo, byB))})
	// A valid signature for another digest, served under this digest's tag.
	pushSignatures(t, repo, forOther, [2][]byte{cosignPayload(repo, signed), ecSign(t, ka, cosignPayload(repo, signed))})
	// A valid signature of this digest in another repository.
	pushSignatures(t, repo, otherRepo, [2][]byte{cosignPayload(other, otherRepo), ecSign(t, ka, cosignPayload(other, otherRepo))})
	pushSignatures(t, repo, byEd, [2][]byte{cosignPayload(repo, byEd), ed25519.Sign(edPriv, cosignPayload(repo, byEd))})
	bad := ecSign(t, ka, cosignPayload(repo, tampered))
	bad[len(bad)-1] ^= 1
	pushSignatures(t, repo, tampered, [2][]byte{cosignPayload(repo, tampered), bad})

	dir := t.TempDir()
	src := &SigstoreSource{SourceName: "cosign", Dir: dir, Repositories: mustPatterns(t, host+"/**"), Verifier: &cosign.Verifier{Keys: []cosign.Key{a, ed}}}
	src.Want(repo, "registry.elsewhere.example/x")
	res, err := src.Sync(context.Background(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "signs digest") || !strings.Contains(err.Error(), "names repository") {
		t.Errorf("Sync error %v: want the signature for another digest and the one for another repository reported", err)
	}
	want := map[digest.Digest][]string{signed: {a.ID}, byEd: {ed.ID}}
	got := signedDigests(res.Index, repo)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("signed digests %v, want %v", got, want)
	}

	// The registry now serves another signature manifest for the signed
	// digest (signed by a key the policy does not name): what verified stays.
	pushSignatures(t, repo, signed, [2][]byte{cosignPayload(repo, signed), ecSign(t, kb, cosignPayload(repo, signed))})
	if _, err := src.SyncRepo(context.Background(), repo); err != nil {
		t.Logf("SyncRepo: %v", err)
	}
	if got := signedDigests(src.Index(), repo); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after another manifest: %v, want %v", got, want)
	}

	// At a pull, a misplaced signature elsewhere in the repository is no
	// failure (the decision explains the digest judged); an unreachable
	// registry with nothing new is.
	fresh := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: src.Repositories, Verifier: &cosign.Verifier{Keys: []cosign.Key{a, ed}}}
	if err := fresh.SyncPulled(context.Background(), repo, time.Now()); err != nil {
		t.Errorf("SyncPulled with misplaced signatures in the repository: %v", err)
	}
	// (The registry now serves only the other key's signature of signed: a
	// node that never saw the good one has none.)
	if got, w := signedDigests(fresh.Index(), repo), map[digest.Digest][]string{byEd: {ed.ID}}; fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("after SyncPulled: %v, want %v", got, w)
	}

	// Offline: a new source over the same directory loads (and verifies
	// again) what was cached, with no registry.
	srv.Close()
	re := &SigstoreSource{SourceName: "cosign", Dir: dir, Repositories: src.Repositories, Verifier: &cosign.Verifier{Keys: []cosign.Key{a, ed}}}
	if err := re.SyncPulled(context.Background(), repo, time.Now()); err == nil || !strings.Contains(err.Error(), ErrUnreachable.Error()) {
		t.Errorf("SyncPulled with the registry gone: %v, want unreachable", err)
	}
	si, err := re.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := signedDigests(si, repo); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	// A key no rule names any more no longer counts.
	re.Verifier = &cosign.Verifier{Keys: []cosign.Key{a}}
	si, _ = re.Load()
	if got := signedDigests(si, repo); fmt.Sprint(got) != fmt.Sprint(map[digest.Digest][]string{signed: {a.ID}}) {
		t.Errorf("after dropping a key: %v", got)
	}

	// A cached signature altered on disk is refused at load and set aside.
	p := re.bundlePath(repo)
	raw, _ := os.ReadFile(p)
	s := string(raw)
	i := strings.Index(s, `"signature":"`) + len(`"signature":"`)
	flip := "A"
	if s[i] == 'A' {
		flip = "B"
	}
	os.WriteFile(p, []byte(s[:i]+flip+s[i+1:]), 0o600)
	si, err = re.Load()
	if err == nil || !strings.Contains(err.Error(), "failed verification") {
		t.Errorf("Load of an altered bundle: %v", err)
	}
	if si.NumRepos() != 0 {
		t.Errorf("altered bundle loaded: %v", si.RepoNames())
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("altered bundle not set aside: %v", err)
	}
}
