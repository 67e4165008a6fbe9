package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// TestPullFetchesFromEachSourceThatDenies: a rule requiring a TUF source
// and a sigstore source ([[rule.also]]), neither of which has the
// repository yet: the denied pull fetches from the TUF source, is decided
// again, is denied by the sigstore source, fetches from it, and is
// allowed — each source once. A source that still denies after its fetch
// is not asked again.
func TestPullFetchesFromEachSourceThatDenies(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_, keyID, _ := policy.ParsePublicKey(keyPEM)
	path := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(path, []byte(`version = 1
[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example.com/"
root = "root.json"
repositories = ["registry.example.com/**"]

[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["registry.example.com/**"]

[[rule]]
images = ["registry.example.com/**"]
action = "verify"
source = "corp"
  [[rule.also]]
  source = "cosign"
  keys = ["cosign.pub"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	repo, d := "registry.example.com/web", digest.FromString("web-1")
	tufIndex := verify.NewSourceIndex("corp", policy.KindTUF, map[string]*verify.Repo{
		repo: {Source: "corp", Name: repo, Expires: time.Now().Add(time.Hour), Tags: map[string]verify.RoleTargets{"1": {"targets": {Digest: d}}}},
	})
	cosignIndex := verify.NewSourceIndex("cosign", policy.KindSigstore, map[string]*verify.Repo{
		repo: {Source: "cosign", Name: repo, Tags: map[string]verify.RoleTargets{verify.SigstoreTag(d): {keyID: {Digest: d}}}},
	})
	for _, tt := range []struct {
		name    string
		serves  map[string]*verify.SourceIndex // what a fetch from each source installs
		allowed bool
		fetched []string
	}{
		{"both sources fetched in turn", map[string]*verify.SourceIndex{"corp": tufIndex, "cosign": cosignIndex}, true, []string{"corp", "cosign"}},
		{"the sigstore source has nothing", map[string]*verify.SourceIndex{"corp": tufIndex}, false, []string{"corp", "cosign"}},
		{"the TUF source has nothing", map[string]*verify.SourceIndex{"cosign": cosignIndex}, false, []string{"corp"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := &engine.Engine{}
			e.Swap(&engine.Snapshot{Policy: p, Index: verify.NewIndex()})
			var fetched []string
			c := &ControlServer{Engine: e, Refresh: func(ctx context.Context, dec verify.Decision) (bool, error) {
				fetched = append(fetched, dec.Source)
				si, ok := tt.serves[dec.Source]
				if ok {
					e.SwapIndex(func(ix *verify.Index) *verify.Index { return ix.With(si) })
				}
				return ok, nil
			}}
			dec := c.judge(context.Background(), verify.Facts{Subject: verify.SubjectPull, Image: repo + ":1", Digest: d}, engine.ViaPull)
			if dec.Allowed != tt.allowed || !slices.Equal(fetched, tt.fetched) {
				t.Errorf("allowed %v (%s), fetched from %v; want %v, %v", dec.Allowed, dec.Reason, fetched, tt.allowed, tt.fetched)
			}
			if !tt.allowed && dec.Source != fmt.Sprint(tt.fetched[len(tt.fetched)-1]) {
				t.Errorf("denied by %q, want the last source fetched", dec.Source)
			}
		})
	}
}
