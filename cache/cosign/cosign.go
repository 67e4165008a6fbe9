package cosign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
)

// Media types and annotations of cosign's artifacts.
const (
	// PayloadMediaType is a simple-signing payload layer (tag scheme).
	PayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnn holds a layer's base64 signature of its payload.
	SignatureAnn = "dev.cosignproject.cosign/signature"
	// CertificateAnn, ChainAnn, BundleAnn and TimestampAnn are the keyless
	// parts of a tag-scheme layer: the PEM signing certificate, its PEM
	// chain, the Rekor bundle (signed entry timestamp) and an RFC 3161
	// timestamp.
	CertificateAnn = "dev.sigstore.cosign/certificate"
	ChainAnn       = "dev.sigstore.cosign/chain"
	BundleAnn      = "dev.sigstore.cosign/bundle"
	TimestampAnn   = "dev.sigstore.cosign/rfc3161timestamp"
	// BundleMediaType is the artifact type of a Sigstore bundle attached
	// through referrers (cosign v3's default).
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// SigArtifactType is the artifact type (config media type) of a
	// simple-signing signature manifest attached through referrers
	// (`cosign sign --new-bundle-format=false
	// --registry-referrers-mode=oci-1-1`).
	SigArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"

	payloadType = "cosign container image signature"
)

// Artifact is one signature as found: what the cache keeps and verifies
// again on load. Exactly one form is set: Bundle, or Payload and
// Signature (with the keyless fields for a keyless tag-scheme signature).
type Artifact struct {
	// Simple signing: the payload and its layer's annotations.
	Payload     []byte          `json:"payload,omitempty"`
	Signature   []byte          `json:"signature,omitempty"`
	Certificate []byte          `json:"certificate,omitempty"`  // PEM
	Chain       []byte          `json:"chain,omitempty"`        // PEM
	RekorBundle json.RawMessage `json:"rekor_bundle,omitempty"` // as in BundleAnn
	Timestamp   []byte          `json:"rfc3161_timestamp,omitempty"`
	// Bundle is a Sigstore bundle, as served.
	Bundle json.RawMessage `json:"bundle,omitempty"`
}

// Key is a public key a rule names.
type Key struct {
	ID     string // policy.Key.ID
	Public crypto.PublicKey
}

// Identity is a keyless signer a rule names: a certificate's subject
// (its SAN: an email, a URI such as a CI workflow) and the OIDC issuer that
// vouched for it, each exact or a regular expression (RE2, anchored).
type Identity struct {
	ID                     string // names it in decisions
	Issuer, IssuerRegexp   string
	Subject, SubjectRegexp string
}

// Result is what one artifact proves.
type Result struct {
	// Signer is who signed: a key's ID, or the certificate's subject and
	// issuer ("<subject> (issuer <issuer>)") for a keyless signature.
	Signer string
	// Matches are the IDs of the Keys or Identities that Signer satisfies
	// (never empty when Verify returns no error).
	Matches []string
}

// Verifier checks artifacts against the keys and identities of the
// policy's rules against one source. Its methods are pure and safe for
// concurrent use.
type Verifier struct {
	Keys       []Key
	Identities []Identity
	// Root is the trusted root for keyless signatures: Sigstore's trust
	// material (Fulcio CAs, Rekor and CT log keys, timestamp authorities).
	// nil: keyless signatures are refused, saying so (ErrNoRoot).
	Root *Root
}

// ErrOtherImage marks an artifact that verified but signs another image
// (another digest or repository): a replayed or misplaced signature.
var ErrOtherImage = errors.New("the signature is not for this image")

// ErrNoSigner marks an artifact made by no key or identity the policy
// names: for a keyless one, its certificate, signature, signing time and
// image binding verified but its identity matches none (the error says
// whether the issuer or the subject did not match); for a keyed one, no
// key's signature verifies (see Names).
var ErrNoSigner = errors.New("not signed by a key or identity the policy names")

// Names reports whether signer (a Result.Signer) is one of v's keys: a
// keyed signature recorded as made by it that now fails with ErrNoSigner
// was altered, not merely made by a key no rule names any more.
func (v *Verifier) Names(signer string) bool {
	for _, k := range v.Keys {
		if k.ID == signer {
			return true
		}
	}
	return false
}

// Verify checks a as a signature of image digest d of repository repo
// (normalised, as policy.ParseRef gives it).
func (v *Verifier) Verify(a *Artifact, repo string, d digest.Digest) (Result, error) {
	switch {
	case len(a.Bundle) > 0:
		return v.verifyBundle(a.Bundle, repo, d)
	case len(a.Certificate) > 0:
		return v.verifyKeylessSimple(a, repo, d)
	case len(a.Payload) > 0 && len(a.Signature) > 0:
		for _, k := range v.Keys {
			if err := verifySimpleSigning(k.Public, repo, d, a.Payload, a.Signature); err == nil {
				return Result{Signer: k.ID, Matches: []string{k.ID}}, nil
			} else if errors.Is(err, ErrOtherImage) {
				return Result{}, fmt.Errorf("signed by key %s: %w", k.ID, err)
			}
		}
		return Result{}, ErrNoSigner
	}
	return Result{}, errors.New("empty artifact")
}

// simpleSigning is the part of cosign's simple-signing payload trustd reads.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// verifySimpleSigning checks a keyed cosign signature: sig is pub's
// signature of payload (ECDSA: ASN.1 over SHA-256 of the payload; Ed25519:
// over the payload), and the payload is a simple-signing document for
// digest d of repository repo.
func verifySimpleSigning(pub crypto.PublicKey, repo string, d digest.Digest, payload, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(payload)
		if !ecdsa.VerifyASN1(k, h[:], sig) {
			return errors.New("signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, payload, sig) {
			return errors.New("signature does not verify")
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return checkPayload(payload, repo, d)
}

// PayloadDigest returns the image digest a simple-signing payload names
// ("" when it names none, or does not parse). It verifies nothing: it says
// where a signature found without its image (in an archive) is to be
// verified.
func PayloadDigest(payload []byte) digest.Digest {
	var ss simpleSigning
	if json.Unmarshal(payload, &ss) != nil {
		return ""
	}
	return digest.Digest(ss.Critical.Image.DockerManifestDigest)
}

// checkPayload checks that a simple-signing payload is about digest d of
// repository repo.
func checkPayload(payload []byte, repo string, d digest.Digest) error {
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		return fmt.Errorf("%w: %w", ErrOtherImage, err)
	}
	c := &ss.Critical
	if c.Type != payloadType {
		return fmt.Errorf("%w: type %q", ErrOtherImage, c.Type)
	}
	if c.Image.DockerManifestDigest != string(d) {
		return fmt.Errorf("%w: it signs digest %q, not %s", ErrOtherImage, c.Image.DockerManifestDigest, d)
	}
	if got := referenceRepo(c.Identity.DockerReference); got != repo {
		return fmt.Errorf("%w: it names repository %q, not %s", ErrOtherImage, c.Identity.DockerReference, repo)
	}
	return nil
}

// referenceRepo returns the normalised repository of a payload's
// docker-reference ("" when it does not parse).
func referenceRepo(ref string) string {
	r, err := policy.ParseRef(ref)
	if err != nil {
		return ""
	}
	if rest, ok := strings.CutPrefix(r.Repo, "index.docker.io/"); ok {
		return "docker.io/" + rest
	}
	return r.Repo
}
