package notary

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// Key types and signature methods, as Notary names them.
const (
	keyECDSA     = "ecdsa"
	keyECDSAX509 = "ecdsa-x509"
	keyRSA       = "rsa"
	keyRSAX509   = "rsa-x509"
	keyEd25519   = "ed25519"

	methodECDSA     = "ecdsa"
	methodEdDSA     = "eddsa"
	methodRSAPSS    = "rsapss"
	methodRSAPKCS15 = "rsapkcs1v15"

	minRSABits = 2048 // notary.MinRSABitSize
	maxRSABits = 8192 // refuse keys that make verification absurdly slow
	pssSalt    = sha256.Size
)

// key is a public key as listed in root "keys" or delegations "keys".
type key struct {
	typ    string
	public []byte // keyval.public, decoded
	id     string // the key's real ID, computed from typ and public

	pub   crypto.PublicKey    // nil when unusable
	ident string              // identity of the underlying key, to count distinct keys
	certs []*x509.Certificate // for *-x509 keys: every certificate of the PEM bundle
	bad   string              // why the key is unusable
}

// keyID is Notary's data.TUFKey.ID: the hex SHA-256 of the canonical JSON
// {"keytype":T,"keyval":{"private":null,"public":base64(public)}}.
func keyID(typ string, public []byte) (string, error) {
	c, err := cjson.EncodeCanonical(map[string]any{
		"keytype": typ,
		"keyval":  map[string]any{"private": nil, "public": base64.StdEncoding.EncodeToString(public)},
	})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

func parseKey(v any, where string) (*key, error) {
	m, err := object(v, where, []string{"keytype", "keyval"}, nil)
	if err != nil {
		return nil, err
	}
	k := &key{}
	if k.typ, err = str(m["keytype"], where+".keytype"); err != nil {
		return nil, err
	}
	kv, err := object(m["keyval"], where+".keyval", []string{"public"}, []string{"private"})
	if err != nil {
		return nil, err
	}
	if p, ok := kv["private"]; ok && p != nil {
		return nil, fmt.Errorf("%s.keyval.private: must be null in public metadata", where)
	}
	if k.public, err = b64(kv["public"], where+".keyval.public"); err != nil {
		return nil, err
	}
	if k.id, err = keyID(k.typ, k.public); err != nil {
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	k.load()
	return k, nil
}

// load parses the key material. A key that cannot be used is not an error
// (Notary accepts unknown key types in metadata); it just verifies nothing.
func (k *key) load() {
	var err error
	switch k.typ {
	case keyECDSA, keyRSA:
		k.pub, err = x509.ParsePKIXPublicKey(k.public)
	case keyECDSAX509, keyRSAX509:
		k.certs, err = parseCertBundle(k.public)
		if err == nil {
			k.pub = k.certs[0].PublicKey
		}
	case keyEd25519:
		if len(k.public) != ed25519.PublicKeySize {
			err = fmt.Errorf("ed25519 public key of %d bytes", len(k.public))
		} else {
			k.pub = ed25519.PublicKey(k.public)
		}
	default:
		err = fmt.Errorf("unsupported key type %q", k.typ)
	}
	if err == nil {
		switch p := k.pub.(type) {
		case *ecdsa.PublicKey:
			if k.typ != keyECDSA && k.typ != keyECDSAX509 {
				err = fmt.Errorf("%s key holds an ECDSA public key", k.typ)
			}
		case *rsa.PublicKey:
			if k.typ != keyRSA && k.typ != keyRSAX509 {
				err = fmt.Errorf("%s key holds an RSA public key", k.typ)
			} else if n := p.N.BitLen(); n < minRSABits || n > maxRSABits {
				err = fmt.Errorf("RSA key of %d bits (accepted: %d to %d)", n, minRSABits, maxRSABits)
			}
		case ed25519.PublicKey:
			if k.typ != keyEd25519 {
				err = fmt.Errorf("%s key holds an Ed25519 public key", k.typ)
			}
		default:
			err = fmt.Errorf("unsupported public key %T in a %s key", k.pub, k.typ)
		}
	}
	if err != nil {
		k.pub, k.bad = nil, err.Error()
		return
	}
	if ed, ok := k.pub.(ed25519.PublicKey); ok {
		k.ident = "ed25519:" + string(ed)
		return
	}
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		k.pub, k.bad = nil, err.Error()
		return
	}
	k.ident = string(der)
}

// parseCertBundle parses a PEM bundle of certificates as Notary's
// utils.LoadCertBundleFromPEM: only CERTIFICATE blocks, at least one.
func parseCertBundle(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for len(certs) < 16 {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block of type %q in a certificate key", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// publicKeyID is Notary's utils.CanonicalKeyID: for *-x509 keys the ID of the
// certificate's public key as a plain ecdsa/rsa key (what `docker trust
// inspect` shows); for other keys the key ID.
func (k *key) publicKeyID() string {
	if (k.typ != keyECDSAX509 && k.typ != keyRSAX509) || len(k.certs) == 0 {
		return k.id
	}
	der, err := x509.MarshalPKIXPublicKey(k.certs[0].PublicKey)
	if err != nil {
		return ""
	}
	typ := keyECDSA
	if k.typ == keyRSAX509 {
		typ = keyRSA
	}
	id, _ := keyID(typ, der)
	return id
}

// verify checks one signature as Notary's signed.Verifiers do.
func (k *key) verify(method string, msg, sig []byte) error {
	if k.pub == nil {
		return errors.New(k.bad)
	}
	digest := sha256.Sum256(msg)
	switch method {
	case methodECDSA:
		pub, ok := k.pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("method ecdsa with a %s key", k.typ)
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("ECDSA signature of %d bytes, expected %d", len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return errors.New("ECDSA signature does not verify")
		}
	case methodEdDSA:
		pub, ok := k.pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("method eddsa with a %s key", k.typ)
		}
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
	case methodRSAPSS:
		pub, ok := k.pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("method rsapss with a %s key", k.typ)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: pssSalt, Hash: crypto.SHA256}); err != nil {
			return errors.New("RSA-PSS signature does not verify")
		}
	case methodRSAPKCS15:
		pub, ok := k.pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("method rsapkcs1v15 with a %s key", k.typ)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return errors.New("RSA PKCS#1 v1.5 signature does not verify")
		}
	default:
		return fmt.Errorf("unsupported signature method %q", method)
	}
	return nil
}

// authorised is the set of keys that may sign for a role: key ID → key.
type authorised map[string]*key

// sigCheck is the outcome of checking a file's signatures against a role.
type sigCheck struct {
	role      string
	threshold int
	keyIDs    []string // the role's key IDs
	valid     []string // key IDs with a valid signature (distinct keys)
	invalid   []string // authorised key IDs whose signature did not verify
	unknown   []string // signature key IDs not authorised for the role
	notes     []string // keys of the role that cannot sign, and why
}

func (c *sigCheck) ok() bool { return len(c.valid) >= c.threshold }

// errf renders a failed check, with optional context: always ErrThreshold,
// plus ErrBadSignature when an authorised key's signature did not verify.
func (c *sigCheck) errf(gun, context string, args ...any) error {
	detail := fmt.Sprintf("%d of %d required signatures by keys [%s]", len(c.valid), c.threshold, strings.Join(c.keyIDs, ", "))
	if len(c.valid) > 0 {
		detail += fmt.Sprintf("; valid: [%s]", strings.Join(c.valid, ", "))
	}
	if len(c.invalid) > 0 {
		detail += fmt.Sprintf("; invalid signatures by [%s]", strings.Join(c.invalid, ", "))
	}
	if len(c.unknown) > 0 {
		detail += fmt.Sprintf("; ignored signatures by keys not authorised for %s: [%s]", c.role, strings.Join(c.unknown, ", "))
	}
	if len(c.notes) > 0 {
		detail += "; " + strings.Join(c.notes, "; ")
	}
	if context != "" {
		detail = fmt.Sprintf(context, args...) + ": " + detail
	}
	causes := []error{ErrThreshold}
	what := ErrThreshold.Error()
	if len(c.invalid) > 0 {
		causes = append(causes, ErrBadSignature)
		what += " (" + ErrBadSignature.Error() + ")"
	}
	return &chain{msg: fmt.Sprintf("notary %s: %s: %s: %s", gun, c.role, what, detail), causes: causes}
}

// roleAuth builds the authorised keys of a role from the key IDs it lists
// and the keys map they refer to. A key listed under an ID that is not its
// real ID is not authorised (Notary: ErrInvalidKeyID).
func roleAuth(ids []string, keys map[string]*key) (authorised, []string) {
	auth := authorised{}
	var notes []string
	for _, id := range ids {
		k := keys[id]
		switch {
		case k == nil:
			notes = append(notes, fmt.Sprintf("key %s is not listed", id))
		case k.id != id:
			notes = append(notes, fmt.Sprintf("key listed as %s has ID %s and is not authorised", id, k.id))
		case k.pub == nil:
			notes = append(notes, fmt.Sprintf("key %s is unusable: %s", id, k.bad))
		default:
			auth[id] = k
		}
	}
	return auth, notes
}

// checkSigs verifies e's signatures against the authorised keys; distinct
// underlying keys are counted once each.
func checkSigs(e *envelope, role string, keyIDs []string, threshold int, auth authorised, notes []string) *sigCheck {
	c := &sigCheck{role: role, threshold: threshold, keyIDs: keyIDs, notes: notes}
	seenIdent := map[string]bool{}
	seenID := map[string]bool{}
	for _, s := range e.sigs {
		k, ok := auth[s.keyID]
		if !ok {
			if !contains(c.unknown, s.keyID) {
				c.unknown = append(c.unknown, s.keyID)
			}
			continue
		}
		if seenID[s.keyID] && seenIdent[k.ident] {
			continue // already counted
		}
		if err := k.verify(s.method, e.canonical, s.sig); err != nil {
			if !contains(c.invalid, s.keyID) {
				c.invalid = append(c.invalid, s.keyID)
			}
			continue
		}
		seenID[s.keyID] = true
		if !seenIdent[k.ident] {
			seenIdent[k.ident] = true
			c.valid = append(c.valid, s.keyID)
		}
	}
	// A key that also produced a valid signature is not reported as invalid.
	inv := c.invalid[:0]
	for _, id := range c.invalid {
		if !seenID[id] {
			inv = append(inv, id)
		}
	}
	c.invalid = inv
	sort.Strings(c.unknown)
	return c
}
