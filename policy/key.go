package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxKeyFile bounds a public key file.
const maxKeyFile = 64 << 10

// Key is one public key of a rule against a sigstore source: a PEM
// "PUBLIC KEY" (PKIX) file, ECDSA P-256 as `cosign generate-key-pair`
// writes it, or Ed25519. Parse sets Pos and Path; Load reads the file and
// sets ID and Public.
type Key struct {
	Pos  Position // of the element in the rule's keys
	Path string   // resolved against the policy file's directory
	// ID names the key in decisions and logs: the first 16 hex digits of
	// the SHA-256 of its DER (PKIX) encoding.
	ID string
	// Public is an *ecdsa.PublicKey on P-256 or an ed25519.PublicKey.
	Public crypto.PublicKey
}

// KeyIDLen is the length of a Key.ID, in hex digits.
const KeyIDLen = 16

// ParsePublicKey parses a PEM public key file's content as Key accepts it
// and returns the key and its ID.
func ParsePublicKey(data []byte) (crypto.PublicKey, string, error) {
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, "", errors.New("no PEM block (want -----BEGIN PUBLIC KEY-----, as cosign generate-key-pair writes cosign.pub)")
	case block.Type != "PUBLIC KEY":
		return nil, "", fmt.Errorf("PEM block %q is not a public key (want \"PUBLIC KEY\"; a private key never belongs on the node)", block.Type)
	case len(block.Headers) > 0:
		return nil, "", errors.New("PEM block has headers (an encrypted or non-standard key)")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, "", errors.New("more than one PEM block: one key per file")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("invalid public key: %w", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("ECDSA key on curve %s: only P-256 is supported", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, "", fmt.Errorf("unsupported key type %T (want ECDSA P-256 or Ed25519)", pub)
	}
	sum := sha256.Sum256(block.Bytes)
	return pub, hex.EncodeToString(sum[:])[:KeyIDLen], nil
}

// readKeys reads and parses the key files of every rule, sets each Key's ID
// and Public and the rule's Signers (the key IDs, then the identities'
// IDs), and returns an Errors
// naming each key that could not be used, or nil.
func (p *Policy) readKeys() error {
	var errs Errors
	var reqs []*Rule
	for _, r := range p.Rules {
		reqs = append(reqs, r.Requirements()...)
	}
	for _, r := range reqs {
		if len(r.Keys) == 0 {
			continue
		}
		seen := map[string]*Key{}
		ids := make([]string, 0, len(r.Keys))
		for _, k := range r.Keys {
			pub, id, err := readKey(k.Path)
			if err != nil {
				errs = append(errs, &Error{Pos: k.Pos, Msg: fmt.Sprintf("rule.keys: %s: %v", k.Path, err), Err: err})
				continue
			}
			if first := seen[id]; first != nil {
				errs = append(errs, &Error{Pos: k.Pos, Msg: fmt.Sprintf("rule.keys: %s is the same key (%s) as %s: threshold counts distinct keys", k.Path, id, first.Path)})
				continue
			}
			seen[id] = k
			k.ID, k.Public = id, pub
			ids = append(ids, id)
		}
		for _, id := range r.Identities {
			ids = append(ids, id.ID)
		}
		r.Signers = ids
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func readKey(path string) (crypto.PublicKey, string, error) {
	data, err := readFileLimit(path, maxKeyFile)
	if err != nil {
		return nil, "", err
	}
	return ParsePublicKey(data)
}

// readFileLimit reads a file the policy names, of at most limit bytes.
func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
