package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
)

// sigstorePolicy loads a policy with a sigstore source and two rules: one
// key (apps), and two of two keys (team). It returns the policy and the
// key IDs.
func sigstorePolicy(t *testing.T) (*policy.Policy, string, string) {
	t.Helper()
	return sigstorePolicyFile(t, "policies/sigstore.toml")
}

// sigstorePolicyFile loads the policy testdata/file with key files a.pub
// and b.pub beside it, and returns it and the key IDs.
func sigstorePolicyFile(t *testing.T, file string) (*policy.Policy, string, string) {
	t.Helper()
	dir := t.TempDir()
	var ids []string
	for _, name := range []string{"a.pub", "b.pub"} {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, id, err := policy.ParsePublicKey(data)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	doc := readTestdata(file) // keys a.pub and b.pub are written above
	path := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p, ids[0], ids[1]
}

func sigstoreRepo(name string, signed map[digest.Digest][]string) *Repo {
	r := &Repo{Source: "cosign", Name: name, Tags: map[string]RoleTargets{}}
	for d, keys := range signed {
		rt := RoleTargets{}
		for _, k := range keys {
			rt[k] = Target{Digest: d}
		}
		r.Tags[SigstoreTag(d)] = rt
	}
	return r
}

// TestDecideSigstore: against a sigstore source, the digest judged (never
// the tag) must be signed by threshold distinct keys of the rule; reasons
// name the keys.
func TestDecideSigstore(t *testing.T) {
	p, a, b := sigstorePolicy(t)
	other := "0123456789abcdef" // a key no rule names
	ix := NewIndex(NewSourceIndex("cosign", policy.KindSigstore, map[string]*Repo{
		"registry.corp.example/apps/web": sigstoreRepo("registry.corp.example/apps/web", map[digest.Digest][]string{
			dg("web-signed"): {a},
			dg("web-other"):  {other},
			dg("web-index"):  {a},
		}),
		"registry.corp.example/team/api": sigstoreRepo("registry.corp.example/team/api", map[digest.Digest][]string{
			dg("api-both"): {a, b},
			dg("api-one"):  {b},
		}),
	}))
	ix.Source("cosign").Refused = map[string][]string{"registry.corp.example/apps/web@" + string(dg("web-refused")): {"keyless signature: expired", "signed by x: no identity names that issuer"}}
	now := time.Now()
	tests := []struct {
		name    string
		f       Facts
		allowed bool
		reason  string
	}{
		{"signed digest, any tag", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/web:whatever", Digest: dg("web-signed")}, true,
			"digest matches: registry.corp.example/apps/web@" + string(dg("web-signed")) + " is signed by key " + a},
		{"by digest", Facts{Image: "registry.corp.example/apps/web@" + string(dg("web-signed"))}, true, "is signed by key " + a},
		{"unsigned digest", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/web:1", Digest: dg("web-unsigned")}, false,
			"digest " + string(dg("web-unsigned")) + " of registry.corp.example/apps/web is not signed by key " + a},
		{"signed by another key", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/web:1", Digest: dg("web-other")}, false,
			"is not signed by key " + a + " (signed only by key " + other + ")"},
		{"signature for another digest", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/web@" + string(dg("web-unsigned")), Digest: dg("web-unsigned")}, false,
			"requested digest " + string(dg("web-unsigned")) + " of registry.corp.example/apps/web is not signed by key " + a},
		{"signatures found and refused", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/web:1", Digest: dg("web-refused")}, false,
			"is not signed by key " + a + "; signatures found for it were refused: keyless signature: expired; signed by x: no identity names that issuer"},
		{"tag without digest", Facts{Image: "registry.corp.example/apps/web:1"}, false, "cosign signs digests, not tags"},
		{"config covered by a signed index", Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.corp.example/apps/web:1", ConfigDigest: dg("cfg"),
			Covers: map[digest.Digest][]digest.Digest{dg("web-index"): {dg("platform"), dg("cfg")}}}, true, "image config " + string(dg("cfg")) + " matches"},
		{"config not covered", Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.corp.example/apps/web:1", ConfigDigest: dg("cfg2")}, false,
			"image config " + string(dg("cfg2")) + " of registry.corp.example/apps/web is not signed by key " + a + " (no signed manifest's content"},
		{"threshold met", Facts{Subject: SubjectPull, Image: "registry.corp.example/team/api:1", Digest: dg("api-both")}, true, "is signed by keys "},
		{"threshold not met", Facts{Subject: SubjectPull, Image: "registry.corp.example/team/api:1", Digest: dg("api-one")}, false,
			"is not signed by 2 of the keys [" + a + ", " + b + "] (signed only by key " + b + ")"},
		{"repository without signatures", Facts{Subject: SubjectPull, Image: "registry.corp.example/apps/none:1", Digest: dg("x")}, false, "is not signed: source \"cosign\" has no trust data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(p, ix, tt.f, now)
			if d.Allowed != tt.allowed || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("allowed %v, reason %q; want %v, containing %q", d.Allowed, d.Reason, tt.allowed, tt.reason)
			}
		})
	}

	// Refusals are those of the repository judged.
	if d := Decide(p, ix, Facts{Subject: SubjectPull, Image: "registry.corp.example/team/api:1", Digest: dg("web-refused")}, now); d.Allowed || strings.Contains(d.Reason, "refused") {
		t.Errorf("another repository: allowed %v, reason %q", d.Allowed, d.Reason)
	}

	// A policy parsed without its keys (Parse, not Load) allows nothing.
	np, err := policy.Parse(p.File, []byte(strings.ReplaceAll(`version = 1
[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["registry.corp.example/**"]
[[rule]]
images = ["**"]
action = "verify"
source = "cosign"
keys = ["a.pub"]
`, "\t", "")))
	if err != nil {
		t.Fatal(err)
	}
	if d := Decide(np, ix, Facts{Image: "registry.corp.example/apps/web@" + string(dg("web-signed"))}, now); d.Allowed || !strings.Contains(d.Reason, "keys have not been read") {
		t.Errorf("keys not read: allowed %v, %s", d.Allowed, d.Reason)
	}

	// The content lookups a config-only decision needs include every signed
	// digest of the repository, whatever the tag.
	need := Needed(p, ix, Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.corp.example/apps/web:1", ConfigDigest: dg("cfg")})
	if len(need) != 3 {
		t.Errorf("Needed = %v, want the 3 signed digests", need)
	}
}

// TestSigstoreThresholdCountsDistinctSigners: with SignerMatches, the
// index's roles are the actual signers, and a rule's threshold counts
// distinct signers that satisfy one of its keys or identities: one signer
// that satisfies two of them (two identity patterns matching the same
// certificate) counts once.
func TestSigstoreThresholdCountsDistinctSigners(t *testing.T) {
	p, a, b := sigstorePolicy(t) // team rule: a and b, threshold 2
	alice, bob := "alice@corp.example (issuer https://idp.corp.example)", "bob@corp.example (issuer https://idp.corp.example)"
	repo := "registry.corp.example/team/api"
	index := func(matches map[string][]string) *Index {
		si := NewSourceIndex("cosign", policy.KindSigstore, map[string]*Repo{
			repo: sigstoreRepo(repo, map[digest.Digest][]string{
				dg("alice-only"): {alice},
				dg("both"):       {alice, bob},
			}),
		})
		si.SignerMatches = matches
		return NewIndex(si)
	}
	now := time.Now()
	for _, tt := range []struct {
		name    string
		matches map[string][]string
		d       digest.Digest
		allowed bool
		reason  string
	}{
		{"one signer satisfying both entries counts once", map[string][]string{alice: {a, b}, bob: {}}, dg("alice-only"), false, "is not signed by 2 of the keys"},
		{"two signers, each satisfying an entry", map[string][]string{alice: {a, b}, bob: {b}}, dg("both"), true, "is signed by signers " + alice + ", " + bob},
		{"a signer satisfying no entry does not count", map[string][]string{alice: {a}, bob: {"another-key"}}, dg("both"), false, "(signed only by signers " + alice + ", " + bob + ")"},
		{"no signer accepted", map[string][]string{alice: {"x"}, bob: {"y"}}, dg("both"), false, "is not signed by 2 of the keys"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(p, index(tt.matches), Facts{Subject: SubjectPull, Image: repo + ":1", Digest: tt.d}, now)
			if d.Allowed != tt.allowed || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("allowed %v, reason %q; want %v, containing %q", d.Allowed, d.Reason, tt.allowed, tt.reason)
			}
		})
	}
}

// TestDecideAlso: a rule with [[rule.also]] requires every source it
// names of the same image: a TUF source binds the tag to a digest, and a
// sigstore source must have that digest signed by the rule's key. A
// denial names the requirement that denied, with its source (a pull then
// fetches from that source).
func TestDecideAlso(t *testing.T) {
	p, a, _ := sigstorePolicyFile(t, "policies/also.toml")
	repo, audited := "registry.corp.example/both/app", "registry.corp.example/audited/app"
	tags := func(name string) *Repo {
		return &Repo{Source: "corp", Name: name, Tags: map[string]RoleTargets{
			"1":        {"targets": {Digest: dg("signed-both")}},
			"tuf-only": {"targets": {Digest: dg("tuf-only")}},
			"index":    {"targets": {Digest: dg("index")}},
		}}
	}
	ix := NewIndex(
		NewSourceIndex("corp", policy.KindTUF, map[string]*Repo{repo: tags(repo), audited: tags(audited)}),
		NewSourceIndex("cosign", policy.KindSigstore, map[string]*Repo{
			repo:    sigstoreRepo(repo, map[digest.Digest][]string{dg("signed-both"): {a}, dg("cosign-only"): {a}, dg("index"): {a}}),
			audited: sigstoreRepo(audited, map[digest.Digest][]string{dg("signed-both"): {a}}),
		}),
	)
	now := time.Now()
	for _, tt := range []struct {
		name    string
		f       Facts
		allowed bool
		audit   bool
		source  string
		reason  []string
	}{
		{"both sources sign", Facts{Subject: SubjectPull, Image: repo + ":1", Digest: dg("signed-both")}, true, false, "corp",
			[]string{"signed as " + string(dg("signed-both")) + " by targets", `and also #1, source "cosign": digest matches`, "is signed by key " + a}},
		{"tag bound, digest not cosign-signed", Facts{Subject: SubjectPull, Image: repo + ":tuf-only", Digest: dg("tuf-only")}, false, false, "cosign",
			[]string{`but also #1, source "cosign": digest ` + string(dg("tuf-only")) + " of " + repo + " is not signed by key " + a}},
		{"cosign-signed digest, tag not bound to it", Facts{Subject: SubjectPull, Image: repo + ":1", Digest: dg("cosign-only")}, false, false, "corp",
			[]string{"not the signed"}},
		{"cosign-signed digest, no signed tag", Facts{Subject: SubjectPull, Image: repo + "@" + string(dg("cosign-only")), Digest: dg("cosign-only")}, false, false, "corp", nil},
		{"container by config, both through the signed index", Facts{Subject: SubjectContainer, Namespace: "default", Image: repo + ":index", ConfigDigest: dg("cfg"),
			Covers: map[digest.Digest][]digest.Digest{dg("index"): {dg("platform"), dg("cfg")}}}, true, false, "corp", []string{"and also #1"}},
		{"audit mode covers the also requirement", Facts{Subject: SubjectPull, Image: audited + ":tuf-only", Digest: dg("tuf-only")}, true, true, "cosign", []string{"but also #1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(p, ix, tt.f, now)
			if d.Allowed != tt.allowed || d.Audit != tt.audit || d.Source != tt.source {
				t.Errorf("allowed %v audit %v source %q (%s); want %v %v %q", d.Allowed, d.Audit, d.Source, d.Reason, tt.allowed, tt.audit, tt.source)
			}
			for _, r := range tt.reason {
				if !strings.Contains(d.Reason, r) {
					t.Errorf("reason %q lacks %q", d.Reason, r)
				}
			}
		})
	}
}
