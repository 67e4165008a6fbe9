package cosign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/policy"
)

const (
	testRepo  = "registry.corp.example/apps/web"
	ciIssuer  = "https://token.ci.corp.example"
	ciSubject = "https://ci.corp.example/apps/web/release.yml@refs/heads/main"
)

// trustedRoot is the trusted root of a deployment made of fulcio's CA and
// logs' Rekor and timestamp authority, as trustd reads it.
func trustedRoot(t *testing.T, fulcio, logs *ca.VirtualSigstore) *Root {
	t.Helper()
	parsed, err := ParseTrustedRoot(testsigstore.TrustedRoot(t, fulcio, logs))
	if err != nil {
		t.Fatal(err)
	}
	return NewRoot(parsed)
}

func ciIdentities() []Identity {
	return []Identity{
		{ID: "ci", Issuer: ciIssuer, Subject: ciSubject},
		{ID: "ci-any-branch", Issuer: ciIssuer, SubjectRegexp: `https://ci\.corp\.example/apps/web/release\.yml@refs/heads/.+`},
		{ID: "other-issuer", IssuerRegexp: `https://other\.example`, SubjectRegexp: `.*`},
	}
}

// TestVerifyKeylessBundle: a keyless Sigstore bundle is accepted only when
// its certificate chains to the trusted root's Fulcio CA at the signing
// time its log entry proves, the log entry is for this signature, the
// statement signs this digest, and the identity is one the policy names;
// each refusal says which.
func TestVerifyKeylessBundle(t *testing.T) {
	vs := testsigstore.New(t)
	other := testsigstore.New(t)
	d := digest.FromString("image")
	soon := time.Now().Add(time.Minute)
	good := testsigstore.Attest(t, vs, ciSubject, ciIssuer, testsigstore.SignStatement(d, SignPredicateType), soon)
	v := &Verifier{Identities: ciIdentities(), Root: trustedRoot(t, vs, vs)}

	t.Run("valid", func(t *testing.T) {
		for _, mt := range []string{testsigstore.MediaTypeV3, testsigstore.MediaTypeV1} {
			res, err := v.Verify(&Artifact{Bundle: testsigstore.Bundle(t, vs, good, mt, nil, true)}, testRepo, d)
			want := ciSubject + " (issuer " + ciIssuer + ")"
			if err != nil || res.Signer != want || strings.Join(res.Matches, ",") != "ci,ci-any-branch" {
				t.Errorf("%s: Verify = %+v, %v; want signer %q matching ci, ci-any-branch", mt, res, err, want)
			}
		}
	})
	expired := testsigstore.Attest(t, vs, ciSubject, ciIssuer, testsigstore.SignStatement(d, SignPredicateType), time.Now().Add(30*time.Minute))
	forOther := testsigstore.Attest(t, vs, ciSubject, ciIssuer, testsigstore.SignStatement(digest.FromString("other image"), SignPredicateType), soon)
	provenance := testsigstore.Attest(t, vs, ciSubject, ciIssuer, testsigstore.SignStatement(d, "https://slsa.dev/provenance/v1"), soon)
	wrongSubject := testsigstore.Attest(t, vs, "https://ci.corp.example/apps/api/release.yml@refs/heads/main", ciIssuer, testsigstore.SignStatement(d, SignPredicateType), soon)
	wrongIssuer := testsigstore.Attest(t, vs, ciSubject, "https://token.evil.example", testsigstore.SignStatement(d, SignPredicateType), soon)
	untrusted := testsigstore.Attest(t, other, ciSubject, ciIssuer, testsigstore.SignStatement(d, SignPredicateType), soon)

	tests := []struct {
		name   string
		bundle []byte
		v      *Verifier
		is     error
		want   string
	}{
		{"wrong identity", testsigstore.Bundle(t, vs, wrongSubject, testsigstore.MediaTypeV3, nil, true), v, ErrNoSigner, "the subject matches no identity of its issuer"},
		{"wrong issuer", testsigstore.Bundle(t, vs, wrongIssuer, testsigstore.MediaTypeV3, nil, true), v, ErrNoSigner, "no identity names that issuer"},
		{"certificate expired at signing time, no timestamp", testsigstore.Bundle(t, vs, expired, testsigstore.MediaTypeV3, nil, false), v, nil, "was not valid at the signing time that the log entry proves"},
		{"log entry for other bytes", testsigstore.Bundle(t, vs, good, testsigstore.MediaTypeV3, testsigstore.FirstEntry(t, vs, forOther), true), v, nil, "transparency log signature does not match"},
		{"bundle for another digest", testsigstore.Bundle(t, vs, forOther, testsigstore.MediaTypeV3, nil, true), v, ErrOtherImage, "it signs [\"sha256:" + digest.FromString("other image").Encoded() + "\"], not " + string(d)},
		{"attestation, not a signature", testsigstore.Bundle(t, vs, provenance, testsigstore.MediaTypeV3, nil, true), v, ErrOtherImage, "predicate type \"https://slsa.dev/provenance/v1\""},
		{"untrusted CA", testsigstore.Bundle(t, other, untrusted, testsigstore.MediaTypeV3, nil, true), &Verifier{Identities: ciIdentities(), Root: trustedRoot(t, vs, other)}, nil, "does not chain to a certificate authority of the trusted root"},
		{"keyless, and no identity named", testsigstore.Bundle(t, vs, good, testsigstore.MediaTypeV3, nil, true), &Verifier{Keys: []Key{{ID: "k"}}}, ErrNoSigner, "the rules name no identity"},
		{"no trusted root configured", testsigstore.Bundle(t, vs, good, testsigstore.MediaTypeV3, nil, true), &Verifier{Identities: ciIdentities()}, ErrNoRoot, "set trusted_root, or url and root"},
		{"trusted root not loaded", testsigstore.Bundle(t, vs, good, testsigstore.MediaTypeV3, nil, true), &Verifier{Identities: ciIdentities(), Root: &Root{}}, ErrNoRoot, "not loaded yet"},
		{"not a bundle", []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.4+json"}`), v, nil, "not a Sigstore bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.v.Verify(&Artifact{Bundle: tt.bundle}, testRepo, d)
			if err == nil || !strings.Contains(err.Error(), tt.want) || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Verify = %+v, %v; want an error matching %v saying %q", res, err, tt.is, tt.want)
			}
			if tt.is == nil && (errors.Is(err, ErrNoSigner) || errors.Is(err, ErrOtherImage)) {
				t.Errorf("Verify = %v: a cryptographic failure must not read as ErrNoSigner or ErrOtherImage", err)
			}
		})
	}
}

// tagArtifact is vs's keyless signature of payload in cosign's tag scheme
// (the layer's annotations), with the Rekor bundle and RFC 3161 timestamp
// when asked for.
func tagArtifact(t *testing.T, vs *ca.VirtualSigstore, subject, issuer string, payload []byte, at time.Time, rekor, ts bool) *Artifact {
	t.Helper()
	s := testsigstore.SignTag(t, vs, subject, issuer, payload, at, rekor, ts)
	return &Artifact{Payload: s.Payload, Signature: s.Signature, Certificate: s.Certificate, RekorBundle: s.RekorBundle, Timestamp: s.Timestamp}
}

// TestVerifyKeylessTagScheme: a keyless tag-scheme signature (certificate,
// Rekor bundle or RFC 3161 timestamp in the layer's annotations) verifies
// the same way, and its payload must name this image.
func TestVerifyKeylessTagScheme(t *testing.T) {
	vs := testsigstore.New(t)
	d := digest.FromString("image")
	soon := time.Now().Add(time.Minute)
	v := &Verifier{Identities: ciIdentities(), Root: trustedRoot(t, vs, vs)}
	payload := cosignPayload(testRepo, d)

	for _, c := range []struct {
		name      string
		rekor, ts bool
	}{{"Rekor bundle", true, false}, {"RFC 3161 timestamp", false, true}, {"both", true, true}} {
		t.Run("valid/"+c.name, func(t *testing.T) {
			res, err := v.Verify(tagArtifact(t, vs, ciSubject, ciIssuer, payload, soon, c.rekor, c.ts), testRepo, d)
			if err != nil || res.Signer != ciSubject+" (issuer "+ciIssuer+")" || len(res.Matches) != 2 {
				t.Errorf("Verify = %+v, %v", res, err)
			}
		})
	}
	tampered := tagArtifact(t, vs, ciSubject, ciIssuer, payload, soon, true, false)
	tampered.Payload = cosignPayload(testRepo, digest.FromString("other image"))
	otherLog := tagArtifact(t, vs, ciSubject, ciIssuer, payload, soon, true, false)
	otherLog.RekorBundle = tagArtifact(t, vs, ciSubject, ciIssuer, cosignPayload(testRepo, digest.FromString("x")), soon, true, false).RekorBundle
	tests := []struct {
		name string
		a    *Artifact
		is   error
		want string
	}{
		{"payload for another digest", tagArtifact(t, vs, ciSubject, ciIssuer, cosignPayload(testRepo, digest.FromString("other image")), soon, true, false), ErrOtherImage, "signs digest"},
		{"payload for another repository", tagArtifact(t, vs, ciSubject, ciIssuer, cosignPayload("registry.corp.example/apps/api", d), soon, true, false), ErrOtherImage, "names repository"},
		{"payload replaced", tampered, nil, "does not match artifact"},
		{"log entry for other bytes", otherLog, nil, "transparency log"},
		{"expired certificate, no log entry or timestamp", tagArtifact(t, vs, ciSubject, ciIssuer, payload, soon, false, false), nil, "threshold not met"},
		{"expired at the logged time", tagArtifact(t, vs, ciSubject, ciIssuer, payload, time.Now().Add(30*time.Minute), true, false), nil, "not valid at the signing time"},
		{"wrong issuer", tagArtifact(t, vs, ciSubject, "https://token.evil.example", payload, soon, true, false), ErrNoSigner, "no identity names that issuer"},
		{"bad certificate annotation", &Artifact{Payload: payload, Signature: []byte("x"), Certificate: []byte("junk")}, nil, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(tt.a, testRepo, d)
			if err == nil || !strings.Contains(err.Error(), tt.want) || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Verify = %+v, %v; want an error matching %v saying %q", res, err, tt.is, tt.want)
			}
			if tt.is == nil && (errors.Is(err, ErrNoSigner) || errors.Is(err, ErrOtherImage)) {
				t.Errorf("Verify = %v: a cryptographic failure must not read as ErrNoSigner or ErrOtherImage", err)
			}
		})
	}
}

// keyedBundle is a bundle as cosign v3 `sign --key k --tlog-upload=false
// --new-bundle-format` makes it: a DSSE envelope of the sign statement,
// signed by k, with the public key's hint and no log entry.
func keyedBundle(t *testing.T, k *ecdsa.PrivateKey, statement []byte) []byte {
	t.Helper()
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	es, err := dsse.NewEnvelopeSigner(&sigdsse.SignerAdapter{SignatureSigner: sv, Pub: &k.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	env, err := es.SignPayload(context.Background(), InTotoPayloadType, statement)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b := &protobundle.Bundle{
		MediaType: testsigstore.MediaTypeV3,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "cosign.pub"}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: statement, PayloadType: InTotoPayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVerifyKeyedBundle: a keyed bundle without a log entry verifies with
// the rule's key, for this digest only; a keyless verifier's trusted root
// does not make it valid without the key.
func TestVerifyKeyedBundle(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := digest.FromString("image")
	v := &Verifier{Keys: []Key{{ID: "k1", Public: &k.PublicKey}}}
	if res, err := v.Verify(&Artifact{Bundle: keyedBundle(t, k, testsigstore.SignStatement(d, SignPredicateType))}, testRepo, d); err != nil || res.Signer != "k1" || len(res.Matches) != 1 {
		t.Errorf("valid: Verify = %+v, %v", res, err)
	}
	if _, err := v.Verify(&Artifact{Bundle: keyedBundle(t, k, testsigstore.SignStatement(digest.FromString("x"), SignPredicateType))}, testRepo, d); !errors.Is(err, ErrOtherImage) || !strings.Contains(err.Error(), "signed by key k1") {
		t.Errorf("another digest: Verify = %v, want ErrOtherImage", err)
	}
	if _, err := v.Verify(&Artifact{Bundle: keyedBundle(t, other, testsigstore.SignStatement(d, SignPredicateType))}, testRepo, d); !errors.Is(err, ErrNoSigner) {
		t.Errorf("another key: Verify = %v, want ErrNoSigner", err)
	}
	vs := testsigstore.New(t)
	kv := &Verifier{Identities: ciIdentities(), Root: trustedRoot(t, vs, vs)}
	if _, err := kv.Verify(&Artifact{Bundle: keyedBundle(t, k, testsigstore.SignStatement(d, SignPredicateType))}, testRepo, d); !errors.Is(err, ErrNoSigner) {
		t.Errorf("keyed bundle, keyless verifier: Verify = %v, want ErrNoSigner", err)
	}
}

// TestParseTrustedRoot: bounded, and a root that can prove no signing
// time or names no CA is refused.
func TestParseTrustedRoot(t *testing.T) {
	vs := testsigstore.New(t)
	for _, c := range []struct {
		name string
		tr   func() (*root.TrustedRoot, error)
		want string
	}{
		{"no CA", func() (*root.TrustedRoot, error) {
			return root.NewTrustedRoot(root.TrustedRootMediaType01, nil, nil, vs.TimestampingAuthorities(), vs.RekorLogs())
		}, "no certificate authority"},
		{"no log or TSA", func() (*root.TrustedRoot, error) {
			return root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, nil, nil)
		}, "no signing time can be proven"},
	} {
		tr, err := c.tr()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := tr.MarshalJSON()
		if _, err := ParseTrustedRoot(data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseTrustedRoot = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := ParseTrustedRoot(make([]byte, MaxTrustedRoot+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("large: ParseTrustedRoot = %v", err)
	}
	if _, err := ParseTrustedRoot([]byte(`{"mediaType":"x"}`)); err == nil {
		t.Error("bad media type accepted")
	}
}

// TestVerifyCosignCLIBundle: a bundle the real cosign v3.1.3 CLI wrote
// (`cosign sign --key cosign.key --tlog-upload=false --new-bundle-format
// --bundle ...` of 127.0.0.1:46377/apps/web@sha256:04e0...; the private
// key was thrown away) verifies with its public key for that digest only.
func TestVerifyCosignCLIBundle(t *testing.T) {
	raw, err := os.ReadFile("testdata/cosign-v3.1.3-keyed-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := os.ReadFile("testdata/cosign-v3.1.3.pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, id, err := policy.ParsePublicKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Keys: []Key{{ID: id, Public: pub}}}
	repo, d := "127.0.0.1:46377/apps/web", digest.Digest("sha256:04e045c67380d15cbbe828142c06dc7cd26b2f30282fbf999f20acc31440e08b")
	if res, err := v.Verify(&Artifact{Bundle: raw}, repo, d); err != nil || res.Signer != id {
		t.Errorf("Verify = %+v, %v", res, err)
	}
	if _, err := v.Verify(&Artifact{Bundle: raw}, repo, digest.FromString("other")); !errors.Is(err, ErrOtherImage) || !strings.Contains(err.Error(), "it signs [\"sha256:04e045c6") {
		t.Errorf("another digest: Verify = %v, want ErrOtherImage", err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := (&Verifier{Keys: []Key{{ID: "other", Public: &k.PublicKey}}}).Verify(&Artifact{Bundle: raw}, repo, d); !errors.Is(err, ErrNoSigner) {
		t.Errorf("another key: Verify = %v, want ErrNoSigner", err)
	}
}
