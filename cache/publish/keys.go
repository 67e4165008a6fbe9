package publish

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key types Init and GenerateKey accept.
const (
	KeyEd25519   = "ed25519"
	KeyECDSAP256 = "ecdsa-p256"
)

// ErrPassphrase is matched by the errors of a private key that is
// encrypted when no passphrase was given, or that the passphrase does not
// open.
var ErrPassphrase = errors.New("passphrase")

// pbkdf2Iterations is the work factor of a key file's passphrase
// (PBKDF2-HMAC-SHA256, as recommended for it in 2023).
const pbkdf2Iterations = 600_000

// keyFileFormat is the format number of a private key file.
const keyFileFormat = 1

// keyFile is a private key file as written: the public key in the clear
// (so that a role's keys can be found without the passphrase), the
// private key as PKCS #8 DER, either plain or sealed.
type keyFile struct {
	Format    int           `json:"format"`
	KeyID     string        `json:"keyid"`
	Public    *metadata.Key `json:"public"`
	Private   []byte        `json:"private,omitempty"`
	Encrypted *sealed       `json:"encrypted,omitempty"`
}

// sealed is a private key encrypted with AES-256-GCM under a key derived
// from a passphrase with PBKDF2-HMAC-SHA256.
type sealed struct {
	KDF        string `json:"kdf"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Cipher     string `json:"cipher"`
	Nonce      []byte `json:"nonce"`
	Data       []byte `json:"data"`
}

// PrivateKey is a signing key read from a key file.
type PrivateKey struct {
	// ID is the TUF key ID of the public key.
	ID string
	// Public is the public key as TUF metadata lists it.
	Public *metadata.Key
	// Path is the file it was read from ("" when generated).
	Path string

	file   *keyFile
	signer signature.Signer
}

// generateKey makes a key pair of the given type.
func generateKey(keyType string) (*PrivateKey, crypto.PrivateKey, error) {
	var priv crypto.PrivateKey
	var pub crypto.PublicKey
	switch keyType {
	case "", KeyEd25519:
		p, s, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		priv, pub = s, p
	case KeyECDSAP256:
		s, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		priv, pub = s, s.Public()
	default:
		return nil, nil, fmt.Errorf("key type %q: want %s or %s", keyType, KeyEd25519, KeyECDSAP256)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	id, err := k.ID()
	if err != nil {
		return nil, nil, err
	}
	s, err := loadSigner(priv)
	if err != nil {
		return nil, nil, err
	}
	return &PrivateKey{ID: id, Public: k, signer: s}, priv, nil
}

func loadSigner(priv crypto.PrivateKey) (signature.Signer, error) {
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		return signature.LoadED25519Signer(p)
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, errors.New("only ECDSA keys on P-256 are supported")
		}
		return signature.LoadECDSASigner(p, crypto.SHA256)
	}
	return nil, fmt.Errorf("unsupported private key type %T (want ed25519 or ECDSA P-256)", priv)
}

// writeKeyFile writes a new private key to path (0600, never over an
// existing file), sealed when passphrase is not empty, and returns it.
func writeKeyFile(path, keyType string, passphrase []byte) (*PrivateKey, error) {
	k, priv, err := generateKey(keyType)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	kf := &keyFile{Format: keyFileFormat, KeyID: k.ID, Public: k.Public}
	if len(passphrase) > 0 {
		if kf.Encrypted, err = seal(der, passphrase); err != nil {
			return nil, err
		}
	} else {
		kf.Private = der
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeNew(path, append(data, '\n'), 0o600); err != nil {
		return nil, err
	}
	k.Path, k.file = path, kf
	return k, nil
}

// writeNew writes a file that must not exist yet, crash-safely.
func writeNew(path string, data []byte, perm os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists: not overwriting a key", path)
	}
	return writeFile(path, data, perm)
}

func seal(plain, passphrase []byte) (*sealed, error) {
	s := &sealed{KDF: "pbkdf2-sha256", Iterations: pbkdf2Iterations, Cipher: "aes-256-gcm", Salt: make([]byte, 16)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	s.Data = aead.Seal(nil, s.Nonce, plain, []byte("trustd repo key"))
	return s, nil
}

func (s *sealed) aead(passphrase []byte) (cipher.AEAD, error) {
	if s.KDF != "pbkdf2-sha256" || s.Cipher != "aes-256-gcm" || s.Iterations < 1 || s.Iterations > 100_000_000 {
		return nil, fmt.Errorf("unsupported key encryption %s/%s (%d iterations)", s.KDF, s.Cipher, s.Iterations)
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), s.Salt, s.Iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (s *sealed) open(passphrase []byte) ([]byte, error) {
	aead, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, errors.New("bad nonce")
	}
	plain, err := aead.Open(nil, s.Nonce, s.Data, []byte("trustd repo key"))
	if err != nil {
		return nil, fmt.Errorf("%w does not open it", ErrPassphrase)
	}
	return plain, nil
}

// ReadKeyFile reads a private key file's public part; the private key is
// decrypted on first use (Signer), with passphrase when it is sealed.
func ReadKeyFile(path string) (*PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if kf.Format != keyFileFormat || kf.Public == nil || (kf.Private == nil) == (kf.Encrypted == nil) {
		return nil, fmt.Errorf("key file %s: not a trustd repo private key (format %d)", path, kf.Format)
	}
	id, err := kf.Public.ID()
	if err != nil || id != kf.KeyID {
		return nil, fmt.Errorf("key file %s: key ID %s does not match its public key", path, kf.KeyID)
	}
	return &PrivateKey{ID: id, Public: kf.Public, Path: path, file: &kf}, nil
}

// unlock decrypts the private key and checks that it is the public key's.
func (k *PrivateKey) unlock(passphrase []byte) (signature.Signer, error) {
	if k.signer != nil {
		return k.signer, nil
	}
	der := k.file.Private
	if k.file.Encrypted != nil {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("key %s (%s) is encrypted: give its passphrase with --passphrase-file or TRUSTD_REPO_PASSPHRASE: %w", short(k.ID), k.Path, ErrPassphrase)
		}
		var err error
		if der, err = k.file.Encrypted.open(passphrase); err != nil {
			return nil, fmt.Errorf("key %s (%s): the %w", short(k.ID), k.Path, err)
		}
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("key %s (%s): %w", short(k.ID), k.Path, err)
	}
	s, err := loadSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("key %s (%s): %w", short(k.ID), k.Path, err)
	}
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	mk, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if id, err := mk.ID(); err != nil || id != k.ID {
		return nil, fmt.Errorf("key file %s: the private key is not the one of key ID %s", k.Path, short(k.ID))
	}
	k.signer = s
	return s, nil
}

// GenerateKeyPair writes a new key pair for a team: path holds the private
// key (0600, sealed with passphrase when given), path+".pub" the public key
// as TUF metadata lists it (what `delegate --key` reads). Neither file may
// exist yet.
func GenerateKeyPair(path, keyType string, passphrase []byte) (*PrivateKey, error) {
	if _, err := os.Lstat(path + ".pub"); err == nil {
		return nil, fmt.Errorf("%s.pub already exists: not overwriting a key", path)
	}
	k, err := writeKeyFile(path, keyType, passphrase)
	if err != nil {
		return nil, err
	}
	pub, err := json.MarshalIndent(k.Public, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeNew(path+".pub", append(pub, '\n'), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// ReadPublicKey reads a public key file (GenerateKeyPair's FILE.pub, or
// any TUF key object); given a private key file, it takes its public part.
func ReadPublicKey(path string) (*metadata.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if k, err := ReadKeyFile(path); err == nil {
		return k.Public, nil
	}
	var key metadata.Key
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&key); err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	if _, err := key.ToPublicKey(); err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	switch key.Scheme {
	case metadata.KeySchemeEd25519, metadata.KeySchemeECDSA_SHA2_P256:
	default:
		return nil, fmt.Errorf("public key %s: scheme %q (want ed25519 or ecdsa-sha2-nistp256)", path, key.Scheme)
	}
	return &key, nil
}

// keyRing holds the private keys found in the key directory and given on
// the command line, by key ID.
type keyRing struct {
	keys       map[string]*PrivateKey
	passphrase []byte
}

// loadKeyDir reads the public part of every *.key file in dir (not in
// sub-directories: retired keys are kept in dir/retired).
func loadKeyDir(dir string, passphrase []byte) (*keyRing, error) {
	kr := &keyRing{keys: map[string]*PrivateKey{}, passphrase: passphrase}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".key") {
			continue
		}
		k, err := ReadKeyFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		kr.keys[k.ID] = k
	}
	return kr, nil
}

// add adds key files named on the command line.
func (kr *keyRing) add(paths []string) ([]*PrivateKey, error) {
	var out []*PrivateKey
	for _, p := range paths {
		k, err := ReadKeyFile(p)
		if err != nil {
			return nil, err
		}
		kr.keys[k.ID] = k
		out = append(out, k)
	}
	return out, nil
}

// signers returns the unlocked signers of the keys among ids that the ring
// holds.
func (kr *keyRing) signers(ids []string) ([]signature.Signer, error) {
	var out []signature.Signer
	for _, id := range ids {
		k := kr.keys[id]
		if k == nil {
			continue
		}
		s, err := k.unlock(kr.passphrase)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// short is a key ID as printed: its first 16 hex digits.
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
