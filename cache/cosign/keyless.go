package cosign

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/trustd/trustd/policy"
)

// Bounds on what one artifact may cost.
const (
	// MaxTrustedRoot bounds a trusted_root.json.
	MaxTrustedRoot = 1 << 20
	maxBundle      = 256 << 10 // a Sigstore bundle
	maxCertPEM     = 64 << 10  // a certificate or chain annotation
	maxRekorBundle = 64 << 10  // a Rekor bundle annotation
	maxTimestamp   = 64 << 10  // an RFC 3161 timestamp annotation
	maxSubjects    = 64        // subjects of an in-toto statement
)

// In-toto statements of cosign's bundles: `cosign sign` (v3, the new
// bundle format) signs a DSSE envelope of this payload type holding a
// statement of this predicate type whose subject is the image digest.
const (
	InTotoPayloadType  = "application/vnd.in-toto+json"
	SignPredicateType  = "https://sigstore.dev/cosign/sign/v1"
	statementTypeV1    = "https://in-toto.io/Statement/v1"
	statementTypeV01   = "https://in-toto.io/Statement/v0.1"
	sha256DigestString = "SHA2_256"
)

// ErrNoRoot marks a keyless signature that could not be checked because
// the source has no trusted root (none configured, or the TUF source that
// distributes it has not delivered one yet).
var ErrNoRoot = errors.New("no Sigstore trusted root")

// ParseTrustedRoot parses a trusted_root.json (Sigstore's trust material:
// Fulcio CAs, Rekor and CT log keys, timestamp authorities), as Sigstore's
// TUF repository distributes it.
func ParseTrustedRoot(data []byte) (*root.TrustedRoot, error) {
	if len(data) > MaxTrustedRoot {
		return nil, fmt.Errorf("trusted root is larger than %d bytes", MaxTrustedRoot)
	}
	tr, err := root.NewTrustedRootFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("invalid trusted root: %w", err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 {
		return nil, errors.New("invalid trusted root: it lists no certificate authority (Fulcio)")
	}
	if len(tr.RekorLogs()) == 0 && len(tr.TimestampingAuthorities()) == 0 {
		return nil, errors.New("invalid trusted root: it lists neither a transparency log (Rekor) nor a timestamp authority, so no signing time can be proven")
	}
	return tr, nil
}

// Root is a source's trusted root for keyless signatures. A TUF source
// replaces it when it refreshes, while verifiers use it: methods are safe
// for concurrent use.
type Root struct {
	mu  sync.RWMutex
	tm  root.TrustedMaterial
	err error
}

// NewRoot returns a Root holding tm.
func NewRoot(tm root.TrustedMaterial) *Root {
	r := &Root{}
	r.Set(tm, nil)
	return r
}

// Set replaces the trust material. tm nil (with err saying why) means none.
func (r *Root) Set(tm root.TrustedMaterial, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tm != nil {
		err = nil
	} else if err == nil {
		err = errors.New("not loaded yet")
	}
	r.tm, r.err = tm, err
}

// Material returns the current trust material, or an error matching
// ErrNoRoot that says why there is none.
func (r *Root) Material() (root.TrustedMaterial, error) {
	if r == nil {
		return nil, fmt.Errorf("%w configured for the source (set trusted_root, or url and root)", ErrNoRoot)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.tm == nil {
		if r.err == nil {
			return nil, fmt.Errorf("%w: not loaded yet", ErrNoRoot)
		}
		return nil, fmt.Errorf("%w: %w", ErrNoRoot, r.err)
	}
	return r.tm, nil
}

// verifyBundle checks a Sigstore bundle as cosign v3 `sign` writes it.
func (v *Verifier) verifyBundle(raw []byte, repo string, d digest.Digest) (Result, error) {
	if len(raw) > maxBundle {
		return Result{}, fmt.Errorf("Sigstore bundle is larger than %d bytes", maxBundle)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return Result{}, fmt.Errorf("not a Sigstore bundle (media types v0.1 to v0.3): %w", err)
	}
	sc, err := b.SignatureContent()
	if err != nil {
		return Result{}, fmt.Errorf("Sigstore bundle: %w", err)
	}
	env := sc.EnvelopeContent()
	if env == nil {
		return Result{}, fmt.Errorf("%w: the bundle signs a message digest, not an in-toto statement naming the image (cosign signs images as a DSSE envelope)", ErrOtherImage)
	}
	bindsImage := func() error { return checkStatement(env, repo, d) }
	vc, err := b.VerificationContent()
	if err != nil {
		return Result{}, fmt.Errorf("Sigstore bundle: %w", err)
	}
	if vc.Certificate() != nil {
		tlogs, _ := b.TlogEntries()
		return v.verifyKeyless(&b, len(tlogs) > 0, sgverify.WithoutArtifactUnsafe(), bindsImage)
	}
	// Keyed: the rule's keys, whatever key hint the bundle carries. A log
	// entry is not needed (cosign --tlog-upload=false writes none): a
	// keyed signature proves its signer without one, and trustd does not
	// expire keys.
	for _, k := range v.Keys {
		tm, err := keyMaterial(k.Public)
		if err != nil {
			return Result{}, fmt.Errorf("key %s: %w", k.ID, err)
		}
		sv, err := sgverify.NewVerifier(tm, sgverify.WithNoObserverTimestamps())
		if err != nil {
			return Result{}, err
		}
		if _, err := sv.Verify(&b, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithKey())); err != nil {
			continue
		}
		if err := bindsImage(); err != nil {
			return Result{}, fmt.Errorf("signed by key %s: %w", k.ID, err)
		}
		return Result{Signer: k.ID, Matches: []string{k.ID}}, nil
	}
	return Result{}, ErrNoSigner
}

// keyMaterial is trust material holding pub alone, whatever the hint.
func keyMaterial(pub crypto.PublicKey) (root.TrustedMaterial, error) {
	sv, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	k := root.NewExpiringKey(sv, time.Time{}, time.Time{})
	return root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return k, nil }), nil
}

// statement is the part of an in-toto statement trustd reads.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

// checkStatement checks that a DSSE envelope is cosign's signature of
// digest d (of repository repo, when the statement names one).
func checkStatement(env sgverify.EnvelopeContent, repo string, d digest.Digest) error {
	raw := env.RawEnvelope()
	if raw.PayloadType != InTotoPayloadType {
		return fmt.Errorf("%w: the envelope's payload type is %q, not an in-toto statement", ErrOtherImage, raw.PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(raw.Payload)
	if err != nil {
		return fmt.Errorf("%w: envelope payload: %w", ErrOtherImage, err)
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return fmt.Errorf("%w: in-toto statement: %w", ErrOtherImage, err)
	}
	if st.Type != statementTypeV1 && st.Type != statementTypeV01 {
		return fmt.Errorf("%w: statement type %q", ErrOtherImage, st.Type)
	}
	if st.PredicateType != SignPredicateType {
		return fmt.Errorf("%w: it is an attestation of predicate type %q, not a cosign signature (%s)", ErrOtherImage, st.PredicateType, SignPredicateType)
	}
	if len(st.Subject) > maxSubjects {
		return fmt.Errorf("%w: %d subjects (at most %d are read)", ErrOtherImage, len(st.Subject), maxSubjects)
	}
	var signed []string
	for _, s := range st.Subject {
		h, ok := s.Digest[d.Algorithm().String()]
		if !ok || h != d.Encoded() {
			for alg, h := range s.Digest {
				signed = append(signed, alg+":"+h)
			}
			continue
		}
		if s.Name != "" {
			if got := referenceRepo(s.Name); got != repo {
				return fmt.Errorf("%w: it names repository %q, not %s", ErrOtherImage, s.Name, repo)
			}
		}
		return nil
	}
	slices.Sort(signed)
	return fmt.Errorf("%w: it signs %q, not %s", ErrOtherImage, signed, d)
}

// verifyKeyless checks entity's certificate, signature and signing time
// against the trusted root, then bindsImage, then the identities.
func (v *Verifier) verifyKeyless(entity sgverify.SignedEntity, hasTlog bool, artifact sgverify.ArtifactPolicyOption, bindsImage func() error) (Result, error) {
	if len(v.Identities) == 0 {
		// No identity could accept it, whatever it proves (and a
		// keyed-only source needs no trusted root).
		return Result{}, fmt.Errorf("%w: a keyless signature, and the rules name no identity", ErrNoSigner)
	}
	tm, err := v.Root.Material()
	if err != nil {
		return Result{}, fmt.Errorf("keyless signature: %w", err)
	}
	// The signing time: a transparency log entry when there is one (its
	// inclusion proof or signed entry timestamp verified, and the entry
	// for this signature and certificate), else an RFC 3161 timestamp.
	opts := []sgverify.VerifierOption{sgverify.WithSignedTimestamps(1)}
	if hasTlog {
		opts = []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1)}
	}
	if len(tm.CTLogs()) > 0 {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	sv, err := sgverify.NewVerifier(tm, opts...)
	if err != nil {
		return Result{}, err
	}
	res, err := sv.Verify(entity, sgverify.NewPolicy(artifact, sgverify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return Result{}, fmt.Errorf("keyless signature: %s", explain(err, entity, tm))
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return Result{}, errors.New("keyless signature: no certificate verified")
	}
	c := res.Signature.Certificate
	signer := fmt.Sprintf("%s (issuer %s)", c.SubjectAlternativeName, c.Extensions.Issuer)
	if err := bindsImage(); err != nil {
		return Result{}, fmt.Errorf("signed by %s: %w", signer, err)
	}
	return v.matchIdentity(signer, c.Extensions.Issuer, c.SubjectAlternativeName)
}

// explain says what a sigstore-go refusal means (its messages do not
// say), keeping its details: a certificate from a CA the trusted root
// does not list, or one not valid at the signing time a log entry proves.
func explain(err error, entity sgverify.SignedEntity, tm root.TrustedMaterial) string {
	vc, verr := entity.VerificationContent()
	if verr != nil || vc.Certificate() == nil {
		return err.Error()
	}
	cert := vc.Certificate()
	chains := slices.ContainsFunc(tm.FulcioCertificateAuthorities(), func(ca root.CertificateAuthority) bool {
		_, err := ca.Verify(cert, cert.NotBefore)
		return err == nil
	})
	if !chains {
		return fmt.Sprintf("the certificate (issued by %q) does not chain to a certificate authority of the trusted root: %v", cert.Issuer, err)
	}
	entries, _ := entity.TlogEntries()
	for _, e := range entries {
		if t := e.IntegratedTime(); !t.IsZero() && (t.Before(cert.NotBefore) || t.After(cert.NotAfter)) {
			return fmt.Sprintf("the certificate (valid from %s to %s) was not valid at the signing time that the log entry proves (%s): %v",
				cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339), err)
		}
	}
	return err.Error()
}

// matchIdentity returns the identities issuer and subject satisfy, or
// ErrNoSigner saying which part matched none.
func (v *Verifier) matchIdentity(signer, issuer, subject string) (Result, error) {
	res := Result{Signer: signer}
	issuerKnown := false
	for _, id := range v.Identities {
		iok, err := matches(id.Issuer, id.IssuerRegexp, issuer)
		if err != nil {
			return Result{}, fmt.Errorf("identity %s: %w", id.ID, err)
		}
		sok, err := matches(id.Subject, id.SubjectRegexp, subject)
		if err != nil {
			return Result{}, fmt.Errorf("identity %s: %w", id.ID, err)
		}
		issuerKnown = issuerKnown || iok
		if iok && sok {
			res.Matches = append(res.Matches, id.ID)
		}
	}
	switch {
	case len(res.Matches) > 0:
		return res, nil
	case issuerKnown:
		return Result{}, fmt.Errorf("%w: signed by %s: the subject matches no identity of its issuer", ErrNoSigner, signer)
	default:
		return Result{}, fmt.Errorf("%w: signed by %s: no identity names that issuer", ErrNoSigner, signer)
	}
}

// matches reports whether s is exact, or matches re (anchored).
func matches(exact, re, s string) (bool, error) {
	if re == "" {
		return s == exact, nil
	}
	r, err := policy.CompileIdentityRegexp(re)
	if err != nil {
		return false, err
	}
	return r.MatchString(s), nil
}

// verifyKeylessSimple checks a keyless tag-scheme signature: the payload
// signed by the certificate's key, the certificate issued by a Fulcio CA
// of the trusted root at the signing time the Rekor bundle (or the RFC
// 3161 timestamp) proves, the payload for this image, and the identity.
func (v *Verifier) verifyKeylessSimple(a *Artifact, repo string, d digest.Digest) (Result, error) {
	e, err := newTagEntity(a)
	if err != nil {
		return Result{}, fmt.Errorf("keyless signature: %w", err)
	}
	return v.verifyKeyless(e, len(e.tlogs) > 0, sgverify.WithArtifact(bytes.NewReader(a.Payload)), func() error {
		return checkPayload(a.Payload, repo, d)
	})
}

// tagEntity is a keyless tag-scheme signature as sigstore-go verifies it.
type tagEntity struct {
	cert       *x509.Certificate
	sig        *bundle.MessageSignature
	tlogs      []*tlog.Entry
	timestamps [][]byte
}

// rekorBundle is cosign's BundleAnn: the Rekor entry and its signed entry
// timestamp.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

func newTagEntity(a *Artifact) (*tagEntity, error) {
	if len(a.Certificate) > maxCertPEM || len(a.Chain) > maxCertPEM || len(a.RekorBundle) > maxRekorBundle || len(a.Timestamp) > maxTimestamp {
		return nil, errors.New("an annotation is too large")
	}
	if len(a.Payload) == 0 || len(a.Signature) == 0 {
		return nil, errors.New("no payload or signature")
	}
	block, _ := pem.Decode(a.Certificate)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the certificate annotation holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	sum := sha256.Sum256(a.Payload)
	e := &tagEntity{cert: cert, sig: bundle.NewMessageSignature(sum[:], sha256DigestString, a.Signature)}
	if len(a.RekorBundle) > 0 {
		var rb rekorBundle
		if err := json.Unmarshal(a.RekorBundle, &rb); err != nil {
			return nil, fmt.Errorf("Rekor bundle: %w", err)
		}
		body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
		if err != nil {
			return nil, fmt.Errorf("Rekor bundle body: %w", err)
		}
		logID, err := hex.DecodeString(rb.Payload.LogID)
		if err != nil {
			return nil, fmt.Errorf("Rekor bundle log ID: %w", err)
		}
		entry, err := tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil) //nolint:staticcheck // the Rekor v1 form cosign's annotation holds
		if err != nil {
			return nil, fmt.Errorf("Rekor bundle: %w", err)
		}
		e.tlogs = []*tlog.Entry{entry}
	}
	if len(a.Timestamp) > 0 {
		var ts struct {
			SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
		}
		if err := json.Unmarshal(a.Timestamp, &ts); err != nil {
			return nil, fmt.Errorf("RFC 3161 timestamp annotation: %w", err)
		}
		e.timestamps = [][]byte{ts.SignedRFC3161Timestamp}
	}
	return e, nil
}

func (e *tagEntity) HasInclusionPromise() bool { return len(e.tlogs) > 0 }
func (e *tagEntity) HasInclusionProof() bool   { return false }
func (e *tagEntity) VerificationContent() (sgverify.VerificationContent, error) {
	return bundle.NewCertificate(e.cert), nil
}
func (e *tagEntity) SignatureContent() (sgverify.SignatureContent, error) { return e.sig, nil }
func (e *tagEntity) Timestamps() ([][]byte, error)                        { return e.timestamps, nil }
func (e *tagEntity) TlogEntries() ([]*tlog.Entry, error)                  { return e.tlogs, nil }
func (e *tagEntity) Version() (string, error)                             { return "", nil }
