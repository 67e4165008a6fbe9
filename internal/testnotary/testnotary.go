// Package testnotary is the one builder of Notary (Docker Content Trust)
// keys, certificates and signed metadata files for trustd's tests,
// benchmarks and data sets: internal/gen signs its generated repositories
// with it, test/harness names the keys the real notary CLI makes with it,
// and verify/notary's tests sign hostile repositories with it.
//
// It computes key IDs and signatures itself, from Notary's formats, not
// with verify/notary: the reader's tests then check it against an
// independent writer.
package testnotary

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// Key types and signature methods, as Notary names them.
const (
	KeyECDSA     = "ecdsa"
	KeyECDSAX509 = "ecdsa-x509"
	KeyEd25519   = "ed25519"
	KeyRSA       = "rsa"

	MethodECDSA  = "ecdsa"
	MethodEdDSA  = "eddsa"
	MethodRSAPSS = "rsapss"
)

// KeyID is Notary's ID of a key of keytype with public bytes public: the
// hex sha256 of the canonical JSON key object
// {"keytype":<type>,"keyval":{"private":null,"public":<base64>}}. The
// object has only ASCII keys in sorted order and a base64 value, so
// encoding/json writes its canonical form.
func KeyID(keytype string, public []byte) string {
	b, err := json.Marshal(map[string]any{
		"keytype": keytype,
		"keyval":  map[string]any{"private": nil, "public": public},
	})
	if err != nil {
		panic(err) // cannot happen: fixed types
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Key is a signing key in Notary's form.
type Key struct {
	Signer crypto.Signer
	Type   string
	// Public is the public key as Notary lists it: PKIX DER (ecdsa, rsa),
	// the raw key (ed25519) or a PEM certificate (ecdsa-x509).
	Public []byte
	ID     string
	// Cert is the certificate of an ecdsa-x509 key.
	Cert *x509.Certificate
}

// JSON is the key as a role's "keys" lists it.
func (k *Key) JSON() map[string]any {
	return map[string]any{"keytype": k.Type, "keyval": map[string]any{"private": nil, "public": base64.StdEncoding.EncodeToString(k.Public)}}
}

// NewECDSAKey makes a new ECDSA P-256 key.
func NewECDSAKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return PKIXKey(KeyECDSA, priv)
}

// NewEd25519Key makes a new ed25519 key.
func NewEd25519Key() (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Key{Signer: priv, Type: KeyEd25519, Public: pub, ID: KeyID(KeyEd25519, pub)}, nil
}

// PKIXKey is the key of type keytype (ecdsa or rsa) whose public key
// Notary lists in PKIX DER.
func PKIXKey(keytype string, priv crypto.Signer) (*Key, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Key{Signer: priv, Type: keytype, Public: der, ID: KeyID(keytype, der)}, nil
}

// CertOptions shape a certificate.
type CertOptions struct {
	CommonName          string
	NotBefore, NotAfter time.Time
	// CA makes a certificate authority (key usage cert sign).
	CA bool
	// Issuer and IssuerKey sign the certificate; nil: self-signed.
	Issuer    *x509.Certificate
	IssuerKey crypto.Signer
}

// Cert makes a code signing certificate for key's public key, as Notary's
// root and delegation certificates are.
func Cert(key crypto.Signer, o CertOptions) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  o.CA,
	}
	if o.CA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if o.Issuer != nil {
		parent, signer = o.Issuer, o.IssuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// CertPEM is c in PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// CertKey is the ecdsa-x509 key of key with a certificate made as Cert
// makes it: what Notary's root and delegation keys are.
func CertKey(key crypto.Signer, o CertOptions) (*Key, error) {
	c, err := Cert(key, o)
	if err != nil {
		return nil, err
	}
	p := CertPEM(c)
	return &Key{Signer: key, Type: KeyECDSAX509, Public: p, ID: KeyID(KeyECDSAX509, p), Cert: c}, nil
}

// Sign makes Notary's signature of msg with k: ECDSA r‖s over SHA-256,
// ed25519, or RSA-PSS over SHA-256.
func (k *Key) Sign(msg []byte) (method string, sig []byte, err error) {
	digest := sha256.Sum256(msg)
	switch s := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, s, digest[:])
		if err != nil {
			return "", nil, err
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		return MethodECDSA, out, nil
	case ed25519.PrivateKey:
		return MethodEdDSA, ed25519.Sign(s, msg), nil
	case *rsa.PrivateKey:
		out, err := rsa.SignPSS(rand.Reader, s, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256})
		if err != nil {
			return "", nil, err
		}
		return MethodRSAPSS, out, nil
	}
	return "", nil, fmt.Errorf("unsupported signer %T", k.Signer)
}

// Signature is one signature to put on a file: by Key, listed under KeyID
// (default the key's ID) and Method (default the key's), Tamper flips a bit
// of it.
type Signature struct {
	Key    *Key
	KeyID  string
	Method string
	Tamper bool
}

// Sign wraps signed in Notary's envelope {"signed":…,"signatures":[…]},
// signed by sigs over the canonical JSON of signed. The canonical bytes are
// spliced in as they are: canonical JSON is JSON.
func Sign(signed map[string]any, sigs ...Signature) ([]byte, error) {
	canonical, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]string, 0, len(sigs))
	for _, s := range sigs {
		method, sig, err := s.Key.Sign(canonical)
		if err != nil {
			return nil, err
		}
		if s.Method != "" {
			method = s.Method
		}
		if s.Tamper {
			sig[len(sig)/2] ^= 0x01
		}
		id := s.KeyID
		if id == "" {
			id = s.Key.ID
		}
		list = append(list, map[string]string{"keyid": id, "method": method, "sig": base64.StdEncoding.EncodeToString(sig)})
	}
	sj, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(canonical) + len(sj) + 32)
	b.WriteString(`{"signed":`)
	b.Write(canonical)
	b.WriteString(`,"signatures":`)
	b.Write(sj)
	b.WriteString(`}`)
	return b.Bytes(), nil
}

// FileMeta is Notary's FileMeta of b: length, sha256 and sha512.
func FileMeta(b []byte) map[string]any {
	s256 := sha256.Sum256(b)
	s512 := sha512.Sum512(b)
	return map[string]any{"length": len(b), "hashes": map[string]any{
		"sha256": base64.StdEncoding.EncodeToString(s256[:]),
		"sha512": base64.StdEncoding.EncodeToString(s512[:]),
	}}
}

// Expires is t as Notary writes an expiry.
func Expires(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
