package cosign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testsigstore"
)

func cosignPayload(repo string, d digest.Digest) []byte {
	return testsigstore.SimpleSigningPayload(repo, d)
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

// TestVerifyCosign: the signature must verify over the payload, and the
// payload must sign this digest of this repository as a cosign signature.
func TestVerifyCosign(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Keys: []Key{{ID: "k1", Public: &k.PublicKey}}}
	repo := "registry.corp.example/apps/web"
	d := digest.FromString("x")
	good := cosignPayload(repo, d)
	tests := []struct {
		name    string
		payload []byte
		sig     []byte
		want    string
	}{
		{"valid", good, ecSign(t, k, good), ""},
		{"docker hub spelling", cosignPayload("index.docker.io/apps/web", d), nil, "names repository"},
		{"another digest", cosignPayload(repo, digest.FromString("y")), nil, "signs digest"},
		{"another repository", cosignPayload("registry.corp.example/apps/api", d), nil, "names repository"},
		{"another type", []byte(strings.Replace(string(good), "cosign container image signature", "x", 1)), nil, "type"},
		{"not JSON", []byte("{"), nil, "not for this image"},
		{"signature of other bytes", good, ecSign(t, k, cosignPayload(repo, digest.FromString("y"))), "not signed by a key"},
		{"garbage signature", good, []byte("sig"), "not signed by a key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := tt.sig
			if sig == nil {
				sig = ecSign(t, k, tt.payload)
			}
			res, err := v.Verify(&Artifact{Payload: tt.payload, Signature: sig}, repo, d)
			if tt.want == "" && (err != nil || res.Signer != "k1") || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Verify = %+v, %v, want %q", res, err, tt.want)
			}
		})
	}
	if got := referenceRepo("index.docker.io/library/nginx"); got != "docker.io/library/nginx" {
		t.Errorf("referenceRepo = %q", got)
	}
}
