package notary

// A small Notary-format signer for tests: ECDSA P-256 keys (raw r‖s
// signatures over SHA-256 of the canonical JSON), ecdsa-x509 root
// certificates, Ed25519 and RSA delegation keys, and a builder for whole
// repositories (root, targets, delegations, snapshot, timestamp).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"testing"
	"time"

	"github.com/trustd/trustd/internal/testnotary"
)

// tkey is a test signing key in Notary's format.
type tkey struct {
	signer crypto.Signer
	typ    string
	public []byte
	id     string
	cert   *x509.Certificate
}

func (k *tkey) json() map[string]any {
	return map[string]any{"keytype": k.typ, "keyval": map[string]any{"private": nil, "public": base64.StdEncoding.EncodeToString(k.public)}}
}

// fromKey returns the tkey of a testnotary key, failing t on an error.
func fromKey(t testing.TB) func(*testnotary.Key, error) *tkey {
	return func(k *testnotary.Key, err error) *tkey {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return &tkey{signer: k.Signer, typ: k.Type, public: k.Public, id: k.ID, cert: k.Cert}
	}
}

func (k *tkey) key() *testnotary.Key {
	return &testnotary.Key{Signer: k.signer, Type: k.typ, Public: k.public, ID: k.id, Cert: k.cert}
}

func newECDSAKey(t testing.TB) *tkey {
	t.Helper()
	return fromKey(t)(testnotary.NewECDSAKey())
}

func newEd25519Key(t testing.TB) *tkey {
	t.Helper()
	return fromKey(t)(testnotary.NewEd25519Key())
}

var testRSAKey *rsa.PrivateKey // RSA key generation is slow: one per test binary

func newRSAKey(t testing.TB) *tkey {
	t.Helper()
	if testRSAKey == nil {
		var err error
		if testRSAKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	return fromKey(t)(testnotary.PKIXKey(keyRSA, testRSAKey))
}

// certOpts shape a test certificate.
type certOpts struct {
	cn                  string
	notBefore, notAfter time.Time
	isCA                bool
	parent              *tkey // issuer (nil: self-signed)
	signer              crypto.Signer
}

func (o *certOpts) options(t testing.TB) testnotary.CertOptions {
	t.Helper()
	if o.signer == nil {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o.signer = priv
	}
	co := testnotary.CertOptions{CommonName: o.cn, NotBefore: o.notBefore, NotAfter: o.notAfter, CA: o.isCA}
	if o.parent != nil {
		co.Issuer, co.IssuerKey = o.parent.cert, o.parent.signer
	}
	return co
}

func makeCert(t testing.TB, o certOpts) *x509.Certificate {
	t.Helper()
	co := o.options(t)
	c, err := testnotary.Cert(o.signer, co)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newCertKey makes an ecdsa-x509 key: a certificate for cn (self-signed
// unless o.parent is set), as Notary's root keys are.
func newCertKey(t testing.TB, o certOpts) *tkey {
	t.Helper()
	co := o.options(t)
	return fromKey(t)(testnotary.CertKey(o.signer, co))
}

// sign makes Notary's signature of msg with k.
func (k *tkey) sign(t testing.TB, msg []byte) (method string, sig []byte) {
	t.Helper()
	method, sig, err := k.key().Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	return method, sig
}

// sigSpec is one signature to put on a file: by key, under keyID (default
// the key's ID), with an optional tamper.
type sigSpec struct {
	key    *tkey
	keyID  string
	method string // override
	tamper bool
}

// signFile wraps signed in Notary's envelope, signed as specified
// (testnotary.Sign).
func signFile(t testing.TB, signed map[string]any, sigs ...sigSpec) []byte {
	t.Helper()
	list := make([]testnotary.Signature, len(sigs))
	for i, s := range sigs {
		list[i] = testnotary.Signature{Key: s.key.key(), KeyID: s.keyID, Method: s.method, Tamper: s.tamper}
	}
	b, err := testnotary.Sign(signed, list...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func by(keys ...*tkey) []sigSpec {
	out := make([]sigSpec, len(keys))
	for i, k := range keys {
		out[i] = sigSpec{key: k}
	}
	return out
}

func fileMeta(b []byte) map[string]any { return testnotary.FileMeta(b) }

func expiresJSON(t time.Time) string { return t.Format(time.RFC3339Nano) }

// testRole is targets or a delegation in a test repository.
type testRole struct {
	name      string
	keys      []*tkey // authorised keys (listed by the parent)
	threshold int
	paths     []string // nil: omit "paths"
	hashPfx   []string // path_hash_prefixes
	targets   map[string][]byte
	version   int
	expires   time.Time
	sigs      []sigSpec // default: by(keys...)
	children  []*testRole
	omit      bool           // do not put the file in Files
	noSnap    bool           // do not list the file in the snapshot
	keyIDs    []string       // override the key IDs the parent lists
	keysJSON  map[string]any // override the keys the parent lists
}

// testRepo is a whole Notary repository.
type testRepo struct {
	gun                       string
	now                       time.Time
	rootKeys                  []*tkey
	rootThreshold             int
	rootSigs                  []sigSpec
	rootVersion               int
	rootExpires               time.Time
	timestampKey, snapshotKey *tkey
	tsVersion, snVersion      int
	tsExpires, snExpires      time.Time
	top                       *testRole
	rootKeysJSON              map[string]any // override root "keys"
}

// newTestRepo makes a valid repository for gun at now: one root
// certificate, ECDSA keys elsewhere, targets signing tag "v1".
func newTestRepo(t testing.TB, gun string, now time.Time) *testRepo {
	t.Helper()
	root := newCertKey(t, certOpts{cn: gun, notBefore: now.AddDate(-1, 0, 0), notAfter: now.AddDate(10, 0, 0)})
	return &testRepo{
		gun: gun, now: now,
		rootKeys: []*tkey{root}, rootThreshold: 1, rootVersion: 1, rootExpires: now.AddDate(10, 0, 0),
		timestampKey: newECDSAKey(t), snapshotKey: newECDSAKey(t),
		tsVersion: 1, snVersion: 1,
		tsExpires: now.Add(14 * 24 * time.Hour), snExpires: now.AddDate(3, 0, 0),
		top: &testRole{name: roleTargets, keys: []*tkey{newECDSAKey(t)}, threshold: 1, version: 1,
			expires: now.AddDate(3, 0, 0), targets: map[string][]byte{"v1": []byte("manifest v1")}},
	}
}

func (r *testRepo) opts() Options {
	return Options{GUN: r.gun, Now: r.now, Pin: Pin{TOFU: true}, Source: "test"}
}

func keyIDsOf(keys []*tkey) []any {
	out := []any{}
	for _, k := range keys {
		out = append(out, k.id)
	}
	return out
}

func (r *testRepo) rootSigned() map[string]any {
	keys := map[string]any{}
	for _, k := range r.rootKeys {
		keys[k.id] = k.json()
	}
	keys[r.timestampKey.id] = r.timestampKey.json()
	keys[r.snapshotKey.id] = r.snapshotKey.json()
	for _, k := range r.top.keys {
		keys[k.id] = k.json()
	}
	if r.rootKeysJSON != nil {
		keys = r.rootKeysJSON
	}
	targetsIDs := keyIDsOf(r.top.keys)
	if r.top.keyIDs != nil {
		targetsIDs = toAny(r.top.keyIDs)
	}
	return map[string]any{
		"_type": typeRoot, "consistent_snapshot": false, "version": r.rootVersion, "expires": expiresJSON(r.rootExpires),
		"keys": keys,
		"roles": map[string]any{
			roleRoot:      map[string]any{"keyids": keyIDsOf(r.rootKeys), "threshold": r.rootThreshold},
			roleTargets:   map[string]any{"keyids": targetsIDs, "threshold": r.top.threshold},
			roleSnapshot:  map[string]any{"keyids": []any{r.snapshotKey.id}, "threshold": 1},
			roleTimestamp: map[string]any{"keyids": []any{r.timestampKey.id}, "threshold": 1},
		},
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (r *testRepo) signRoot(t testing.TB) []byte {
	sigs := r.rootSigs
	if sigs == nil {
		sigs = by(r.rootKeys...)
	}
	return signFile(t, r.rootSigned(), sigs...)
}

func targetsJSON(targets map[string][]byte) map[string]any {
	out := map[string]any{}
	for name, content := range targets {
		out[name] = fileMeta(content)
	}
	return out
}

func (tr *testRole) signed() map[string]any {
	keys := map[string]any{}
	roles := []any{}
	for _, c := range tr.children {
		ids := keyIDsOf(c.keys)
		if c.keyIDs != nil {
			ids = toAny(c.keyIDs)
		}
		for _, k := range c.keys {
			keys[k.id] = k.json()
		}
		for id, kj := range c.keysJSON {
			keys[id] = kj
		}
		role := map[string]any{"name": c.name, "keyids": ids, "threshold": c.threshold}
		if c.paths != nil {
			role["paths"] = toAny(c.paths)
		}
		if c.hashPfx != nil {
			role["path_hash_prefixes"] = toAny(c.hashPfx)
		}
		roles = append(roles, role)
	}
	return map[string]any{
		"_type": typeTargets, "version": tr.version, "expires": expiresJSON(tr.expires),
		"targets":     targetsJSON(tr.targets),
		"delegations": map[string]any{"keys": keys, "roles": roles},
	}
}

func (tr *testRole) sign(t testing.TB) []byte {
	sigs := tr.sigs
	if sigs == nil {
		sigs = by(tr.keys...)
	}
	return signFile(t, tr.signed(), sigs...)
}

// build signs everything into Files.
func (r *testRepo) build(t testing.TB) Files {
	t.Helper()
	f := Files{Root: r.signRoot(t), Delegations: map[string][]byte{}}
	snapMeta := map[string]any{roleRoot: fileMeta(f.Root)}
	var walk func(*testRole)
	walk = func(tr *testRole) {
		b := tr.sign(t)
		if tr.name == roleTargets {
			f.Targets = b
		} else if !tr.omit {
			f.Delegations[tr.name] = b
		}
		if !tr.noSnap {
			snapMeta[tr.name] = fileMeta(b)
		}
		for _, c := range tr.children {
			walk(c)
		}
	}
	walk(r.top)
	f.Snapshot = r.signSnapshot(t, snapMeta)
	f.Timestamp = r.signTimestamp(t, f.Snapshot)
	return f
}

func (r *testRepo) signSnapshot(t testing.TB, meta map[string]any) []byte {
	return signFile(t, map[string]any{
		"_type": typeSnapshot, "version": r.snVersion, "expires": expiresJSON(r.snExpires), "meta": meta,
	}, by(r.snapshotKey)...)
}

func (r *testRepo) signTimestamp(t testing.TB, snapshot []byte) []byte {
	return signFile(t, map[string]any{
		"_type": typeTimestamp, "version": r.tsVersion, "expires": expiresJSON(r.tsExpires),
		"meta": map[string]any{roleSnapshot: fileMeta(snapshot)},
	}, by(r.timestampKey)...)
}

// resnap re-signs snapshot and timestamp over f's current files, as a
// Notary server (which holds both keys) can.
func (r *testRepo) resnap(t testing.TB, f Files) Files {
	t.Helper()
	meta := map[string]any{roleRoot: fileMeta(f.Root), roleTargets: fileMeta(f.Targets)}
	for name, b := range f.Delegations {
		meta[name] = fileMeta(b)
	}
	f.Snapshot = r.signSnapshot(t, meta)
	f.Timestamp = r.signTimestamp(t, f.Snapshot)
	return f
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hexString(s[:])
}

func hexString(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = h[c>>4], h[c&15]
	}
	return string(out)
}
