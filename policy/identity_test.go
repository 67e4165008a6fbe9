package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const keylessDoc = `version = 1
[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["registry.corp.example/**"]
trusted_root = "trusted_root.json"

[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "cosign"
`

// TestSigstoreKeylessPolicy: a rule against a sigstore source may name
// keyless identities besides or instead of keys; its signers are the key
// IDs and then the identities' IDs, and Load reads the source's pinned
// trusted_root.json. A source may instead name a TUF repository (url and
// root) distributing it.
func TestSigstoreKeylessPolicy(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeKey(t, dir, "a.pub", &ec.PublicKey)
	trJSON := []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	os.WriteFile(filepath.Join(dir, "trusted_root.json"), trJSON, 0o600)
	os.WriteFile(filepath.Join(dir, "big.json"), make([]byte, maxTrustedRootFile+1), 0o600)
	os.WriteFile(filepath.Join(dir, "junk.json"), []byte("not json"), 0o600)
	load := func(t *testing.T, doc string) (*Policy, error) {
		t.Helper()
		path := filepath.Join(dir, "p.toml")
		if err := os.WriteFile(path, []byte(doc+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(path)
	}

	t.Run("keys and identities", func(t *testing.T) {
		p, err := load(t, keylessDoc+`keys = ["a.pub"]
identities = [
  { issuer = "https://token.ci.corp.example", subject = "ci@corp.example" },
  { issuer_regexp = 'https://token\.(ci|build)\.corp\.example', subject_regexp = '.+@corp\.example' },
]
threshold = 3`)
		if err != nil {
			t.Fatal(err)
		}
		r := p.Rules[0]
		want := []string{r.Keys[0].ID, "ci@corp.example (issuer https://token.ci.corp.example)", `/.+@corp\.example/ (issuer /https://token\.(ci|build)\.corp\.example/)`}
		if !slices.Equal(r.Signers, want) || r.Threshold != 3 || len(r.Identities) != 2 || r.Identities[1].SubjectRegexp != `.+@corp\.example` {
			t.Errorf("signers %q (want %q), threshold %d, identities %+v", r.Signers, want, r.Threshold, r.Identities)
		}
		if s := p.Source("cosign"); s.TrustedRoot != filepath.Join(dir, "trusted_root.json") || string(s.TrustedRootData) != string(trJSON) {
			t.Errorf("trusted root %q: %q", s.TrustedRoot, s.TrustedRootData)
		}
	})
	t.Run("identities alone, TUF root", func(t *testing.T) {
		doc := strings.Replace(keylessDoc, `trusted_root = "trusted_root.json"`, "url = \"https://tuf.corp.example/sigstore/\"\nroot = \"root.json\"", 1)
		p, err := load(t, doc+`identities = [{ issuer = "https://i.example", subject = "s@corp.example" }]`)
		if err != nil {
			t.Fatal(err)
		}
		s := p.Source("cosign")
		if s.URL != "https://tuf.corp.example/sigstore/" || s.Root != filepath.Join(dir, "root.json") || s.TrustedRoot != "" || len(p.Rules[0].Signers) != 1 {
			t.Errorf("source %+v, signers %q", s, p.Rules[0].Signers)
		}
	})

	id := `identities = [{ issuer = "https://i.example", subject = "s@corp.example" }]`
	tests := []struct {
		name, doc, want string
	}{
		{"identities without a trust root", strings.Replace(keylessDoc, `trusted_root = "trusted_root.json"`, "", 1) + id,
			`p.toml:12:14: rule.identities: source "cosign" has no Sigstore trusted root`},
		{"root without url", strings.Replace(keylessDoc, `trusted_root = "trusted_root.json"`, `root = "root.json"`, 1) + id,
			`p.toml:2:1: source: missing required key "url"`},
		{"http url", strings.Replace(keylessDoc, `trusted_root = "trusted_root.json"`, "url = \"http://tuf.corp.example/\"\nroot = \"r.json\"", 1) + id,
			`p.toml:6:7: source.url: http is only allowed for loopback hosts`},
		{"empty identities", keylessDoc + `identities = []`, `p.toml:12:14: rule.identities: must not be empty`},
		{"unknown identity key", keylessDoc + `identities = [{ issuer = "i", subject = "s", email = "x" }]`, `unknown key "rule.identities.email"`},
		{"subject and subject_regexp", keylessDoc + `identities = [{ issuer = "i", subject = "s", subject_regexp = "s" }]`,
			`p.toml:12:63: rule.identities: set either subject or subject_regexp, not both`},
		{"missing subject", keylessDoc + `identities = [{ issuer = "i" }]`, `p.toml:12:15: rule.identities: missing required key "subject" or "subject_regexp"`},
		{"bad regexp", keylessDoc + `identities = [{ issuer_regexp = "a(", subject = "s" }]`,
			"p.toml:12:33: rule.identities.issuer_regexp: invalid regular expression (RE2): error parsing regexp: missing closing ): `a(`"},
		{"Perl lookahead is not RE2", keylessDoc + `identities = [{ issuer = "i", subject_regexp = "(?!x).*" }]`, `rule.identities.subject_regexp: invalid regular expression (RE2)`},
		{"threshold above keys and identities", keylessDoc + "keys = [\"a.pub\"]\n" + id + "\nthreshold = 3", `p.toml:14:13: rule.threshold: 3 is more than the number of keys and identities (2)`},
		{"identities on an allow rule", strings.Replace(keylessDoc, "action = \"verify\"\nsource = \"cosign\"", `action = "allow"`, 1) + id,
			`rule.identities: only valid with action "verify"`},
		{"missing trusted root file", strings.Replace(keylessDoc, `"trusted_root.json"`, `"nope.json"`, 1) + id, `p.toml:6:16: source.trusted_root: ` + filepath.Join(dir, "nope.json") + `: open`},
		{"trusted root too large", strings.Replace(keylessDoc, `"trusted_root.json"`, `"big.json"`, 1) + id, `source.trusted_root: ` + filepath.Join(dir, "big.json") + `: larger than`},
		{"trusted root not JSON", strings.Replace(keylessDoc, `"trusted_root.json"`, `"junk.json"`, 1) + id, `: not JSON`},
		{"offline_grace", strings.Replace(keylessDoc, `trusted_root = "trusted_root.json"`, `offline_grace = "1h"`, 1) + `keys = ["a.pub"]`, `source.offline_grace: not valid for kind "sigstore"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := load(t, tt.doc)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want %s", p, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			if got := strings.TrimPrefix(err.Error(), dir+"/"); !strings.Contains(got, tt.want) {
				t.Errorf("error:\n got: %s\nwant: ...%s...", got, tt.want)
			}
		})
	}
}
