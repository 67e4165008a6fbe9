package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeKey writes the PEM public key of k (an ECDSA or Ed25519 private key)
// to dir/name and returns its path.
func writeKey(t *testing.T, dir, name string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sigstoreDoc = `version = 1
[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["registry.corp.example/**"]

[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "cosign"
`

// TestSigstorePolicy: a sigstore source needs no url or root; a rule
// against it names public keys, which Load reads and parses (their IDs
// become the rule's signers), and every mistake is an error at the line
// and column of the key or value at fault.
func TestSigstorePolicy(t *testing.T) {
	dir := t.TempDir()
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	writeKey(t, dir, "a.pub", &ec1.PublicKey)
	writeKey(t, dir, "b.pub", &ec2.PublicKey)
	writeKey(t, dir, "a-again.pub", &ec1.PublicKey)
	writeKey(t, dir, "ed.pub", edPub)
	writeKey(t, dir, "p384.pub", &p384.PublicKey)
	der, _ := x509.MarshalECPrivateKey(ec1)
	os.WriteFile(filepath.Join(dir, "private.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "garbage.pub"), []byte("not a key\n"), 0o600)

	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(dir, "ok.toml")
		os.WriteFile(path, []byte(sigstoreDoc+"keys = [\"a.pub\", \"b.pub\", \"ed.pub\"]\nthreshold = 2\n"), 0o600)
		p, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		r := p.Rules[0]
		if len(r.Keys) != 3 || len(r.Signers) != 3 || r.Threshold != 2 {
			t.Fatalf("keys %d, signers %v, threshold %d", len(r.Keys), r.Signers, r.Threshold)
		}
		for i, k := range r.Keys {
			if len(k.ID) != KeyIDLen || k.Public == nil || r.Signers[i] != k.ID || filepath.Dir(k.Path) != dir {
				t.Errorf("key %d: %+v (signer %q)", i, k, r.Signers[i])
			}
		}
		if p.Source("cosign").URL != "" {
			t.Errorf("url %q", p.Source("cosign").URL)
		}
	})

	tests := []struct {
		name, doc, want string
	}{
		{"url on sigstore source without root", strings.Replace(sigstoreDoc, `kind = "sigstore"`, "kind = \"sigstore\"\nurl = \"https://x.example\"", 1) + `keys = ["a.pub"]`,
			`p.toml:2:1: source: missing required key "root" (the initial root.json of the TUF repository at url)`},
		{"missing keys", sigstoreDoc, `p.toml:7:1: rule: missing required key "keys" or "identities" (required against a sigstore source`},
		{"empty keys", sigstoreDoc + `keys = []`, `p.toml:11:8: rule.keys: must not be empty`},
		{"signers on sigstore rule", sigstoreDoc + "keys = [\"a.pub\"]\nsigners = [\"x\"]", `p.toml:12:11: rule.signers: not valid against a sigstore source`},
		{"threshold above keys", sigstoreDoc + "keys = [\"a.pub\"]\nthreshold = 2", `p.toml:12:13: rule.threshold: 2 is more than the number of keys (1)`},
		{"duplicate key path", sigstoreDoc + `keys = ["a.pub", "./a.pub"]`, `p.toml:11:18: rule.keys: duplicate key file "./a.pub"`},
		{"keys on a tuf rule", strings.Replace(sigstoreDoc, `kind = "sigstore"`, "kind = \"tuf\"\nurl = \"https://x.example\"\nroot = \"root.json\"", 1) + `keys = ["a.pub"]`,
			`p.toml:13:8: rule.keys: only valid against a sigstore source`},
		{"keys on an allow rule", strings.Replace(sigstoreDoc, "action = \"verify\"\nsource = \"cosign\"", `action = "allow"`, 1) + `keys = ["a.pub"]`,
			`rule.keys: only valid with action "verify"`},
		{"missing key file", sigstoreDoc + `keys = ["a.pub", "nope.pub"]`, `p.toml:11:18: rule.keys: ` + filepath.Join(dir, "nope.pub") + `: open`},
		{"not PEM", sigstoreDoc + `keys = ["garbage.pub"]`, `p.toml:11:9: rule.keys: ` + filepath.Join(dir, "garbage.pub") + `: no PEM block`},
		{"private key", sigstoreDoc + `keys = ["private.pem"]`, `is not a public key`},
		{"P-384", sigstoreDoc + `keys = ["p384.pub"]`, `ECDSA key on curve P-384: only P-256 is supported`},
		{"same key twice", sigstoreDoc + `keys = ["a.pub", "a-again.pub"]`, `p.toml:11:18: rule.keys: ` + filepath.Join(dir, "a-again.pub") + ` is the same key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "p.toml")
			if err := os.WriteFile(path, []byte(tt.doc+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want %s", p, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			got := strings.TrimPrefix(err.Error(), dir+"/")
			if !strings.Contains(got, tt.want) {
				t.Errorf("error:\n got: %s\nwant: ...%s...", got, tt.want)
			}
		})
	}
}
