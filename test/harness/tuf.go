package harness

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFExpiry is how long the metadata a TUFRepo signs stays valid.
const TUFExpiry = 30 * 24 * time.Hour

// TUFRepo is a standard TUF repository (root, targets, snapshot, timestamp,
// optional delegated targets roles), signed with ed25519 keys made for the
// test, written to a directory and served over HTTP on 127.0.0.1 at URL().
// consistent_snapshot is false: the metadata is served as root.json (and
// <N>.root.json), timestamp.json, snapshot.json, targets.json, <role>.json.
//
// Targets name images: "<normalised repository>:<tag>" with the length and
// sha256 of the manifest (or index) bytes. Changes take effect on Publish.
// Methods are safe for concurrent use.
type TUFRepo struct {
	mu       sync.Mutex
	dir      string // served metadata
	rootPath string // the initial root.json, to pin
	addr     string
	srv      *http.Server
	served   chan struct{} // closed when srv.Serve returns

	signers   map[string]signature.Signer // by role name
	root      *metadata.Metadata[metadata.RootType]
	targets   map[string]*metadata.Metadata[metadata.TargetsType] // "targets" and delegated roles
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	dirty     map[string]bool // targets roles changed since the last Publish
}

// NewTUFRepo creates, signs, writes and serves a new repository whose
// version 1 of every role has no targets. It stops serving on cleanup.
func NewTUFRepo(t TB) *TUFRepo {
	t.Helper()
	dir := t.TempDir()
	r := &TUFRepo{
		dir:      filepath.Join(dir, "metadata"),
		rootPath: filepath.Join(dir, "root.json"),
		signers:  map[string]signature.Signer{},
		targets:  map[string]*metadata.Metadata[metadata.TargetsType]{},
		dirty:    map[string]bool{},
	}
	if err := r.init(); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

func (r *TUFRepo) init() error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	expires := time.Now().UTC().Add(TUFExpiry).Truncate(time.Second)
	r.root = metadata.Root(expires)
	r.root.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		key, err := r.newSigner(role)
		if err != nil {
			return err
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			return err
		}
	}
	r.targets[metadata.TARGETS] = metadata.Targets(expires)
	r.snapshot = metadata.Snapshot(expires)
	r.timestamp = metadata.Timestamp(expires)

	rootJSON, err := signAndEncode(r.root, r.signers[metadata.ROOT])
	if err != nil {
		return err
	}
	for _, p := range []string{r.rootPath, filepath.Join(r.dir, "root.json"), filepath.Join(r.dir, "1.root.json")} {
		if err := writeFileAtomic(p, rootJSON); err != nil {
			return err
		}
	}
	r.dirty[metadata.TARGETS] = true
	return r.publish(false)
}

// newSigner makes an ed25519 key for role and returns its public TUF key.
func (r *TUFRepo) newSigner(role string) (*metadata.Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return nil, err
	}
	r.signers[role] = s
	return metadata.KeyFromPublicKey(pub)
}

// URL is the base URL of the metadata, ending in "/": <URL>timestamp.json.
func (r *TUFRepo) URL() string { return "http://" + r.addr + "/metadata/" }

// RootPath is the file holding version 1 of root.json: the root to pin.
func (r *TUFRepo) RootPath() string { return r.rootPath }

// Dir is the directory holding the served metadata files.
func (r *TUFRepo) Dir() string { return r.dir }

// SetTarget signs manifest (image manifest or index bytes) for target name
// ("<normalised repository>:<tag>") in the top-level targets role.
func (r *TUFRepo) SetTarget(name string, manifest []byte) {
	r.SetTargetDigest(name, digest.FromBytes(manifest), int64(len(manifest)))
}

// SetTargetDigest signs a manifest known by its sha256 digest and length for
// target name in the top-level targets role. It panics on a digest that is
// not sha256.
func (r *TUFRepo) SetTargetDigest(name string, d digest.Digest, length int64) {
	r.setTarget(metadata.TARGETS, name, d, length)
}

// SetDelegatedTarget signs manifest for target name in the delegated role.
// It panics if AddDelegation did not create the role.
func (r *TUFRepo) SetDelegatedTarget(role, name string, manifest []byte) {
	r.setTarget(role, name, digest.FromBytes(manifest), int64(len(manifest)))
}

func (r *TUFRepo) setTarget(role, name string, d digest.Digest, length int64) {
	if d.Algorithm() != digest.SHA256 {
		panic(fmt.Sprintf("TUFRepo: target %s: digest %s is not sha256", name, d))
	}
	sum, err := hex.DecodeString(d.Encoded())
	if err != nil {
		panic(fmt.Sprintf("TUFRepo: target %s: %v", name, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	md := r.role(role)
	md.Signed.Targets[name] = &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": sum}, Path: name}
	r.dirty[role] = true
}

// RemoveTarget removes target name from the top-level targets role.
func (r *TUFRepo) RemoveTarget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.role(metadata.TARGETS).Signed.Targets, name)
	r.dirty[metadata.TARGETS] = true
}

// AddDelegation delegates the target paths (TUF glob patterns, matched per
// "/"-separated segment, e.g. "127.0.0.1:5000/team/*") from the top-level
// targets role to a new role with its own key.
func (r *TUFRepo) AddDelegation(role string, paths []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.targets[role]; ok || role == metadata.ROOT || role == metadata.SNAPSHOT || role == metadata.TIMESTAMP {
		panic(fmt.Sprintf("TUFRepo: role %s already exists", role))
	}
	top := r.targets[metadata.TARGETS]
	if top.Signed.Delegations == nil {
		top.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	top.Signed.Delegations.Roles = append(top.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, KeyIDs: []string{}, Threshold: 1, Paths: slices.Clone(paths),
	})
	key, err := r.newSigner(role)
	if err != nil {
		panic(err)
	}
	if err := top.Signed.AddKey(key, role); err != nil {
		panic(err)
	}
	r.targets[role] = metadata.Targets(top.Signed.Expires)
	r.targets[role].Signed.Version = 0 // Publish makes it version 1
	r.dirty[metadata.TARGETS] = true
	r.dirty[role] = true
}

func (r *TUFRepo) role(name string) *metadata.Metadata[metadata.TargetsType] {
	md, ok := r.targets[name]
	if !ok {
		panic(fmt.Sprintf("TUFRepo: no targets role %s (AddDelegation first)", name))
	}
	return md
}

// Publish signs and writes a new version of every targets role changed since
// the last Publish, then of snapshot and timestamp, the timestamp last, each
// file replaced atomically, so that a client never reads a half-written file.
func (r *TUFRepo) Publish() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.publish(true)
}

func (r *TUFRepo) publish(bump bool) error {
	names := make([]string, 0, len(r.targets))
	for name := range r.targets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		md := r.targets[name]
		if !r.dirty[name] && md.Signed.Version > 0 {
			continue
		}
		if bump || md.Signed.Version == 0 {
			md.Signed.Version++
		}
		b, err := signAndEncode(md, r.signers[name])
		if err != nil {
			return fmt.Errorf("sign %s: %w", name, err)
		}
		if err := writeFileAtomic(filepath.Join(r.dir, name+".json"), b); err != nil {
			return err
		}
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	clear(r.dirty)

	if bump {
		r.snapshot.Signed.Version++
	}
	snap, err := signAndEncode(r.snapshot, r.signers[metadata.SNAPSHOT])
	if err != nil {
		return fmt.Errorf("sign snapshot: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, "snapshot.json"), snap); err != nil {
		return err
	}

	if bump {
		r.timestamp.Signed.Version++
	}
	sum := sha256.Sum256(snap)
	r.timestamp.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{
		Version: r.snapshot.Signed.Version,
		Length:  int64(len(snap)),
		Hashes:  metadata.Hashes{"sha256": sum[:]},
	}
	ts, err := signAndEncode(r.timestamp, r.signers[metadata.TIMESTAMP])
	if err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	return writeFileAtomic(filepath.Join(r.dir, "timestamp.json"), ts)
}

// signAndEncode replaces md's signatures with one by s and encodes it.
func signAndEncode[T metadata.Roles](md *metadata.Metadata[T], s signature.Signer) ([]byte, error) {
	md.ClearSignatures()
	if _, err := md.Sign(s); err != nil {
		return nil, err
	}
	return md.ToBytes(true)
}

// writeFileAtomic writes b to a temporary file beside path and renames it
// over path.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Start serves the metadata, on the address it had before if it was stopped.
func (r *TUFRepo) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return errors.New("TUF server already running")
	}
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("TUF server: %w", err)
	}
	r.addr = l.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metadata/", http.StripPrefix("/metadata/", http.FileServer(noDirFS{http.Dir(r.dir)})))
	r.srv = &http.Server{Handler: mux}
	r.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("harness: TUF server: %v", err)
		}
	}(r.srv, r.served)
	return nil
}

// Stop stops serving: clients then fail to connect, as with a trust server
// that is down. Start serves again on the same address.
func (r *TUFRepo) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return nil
	}
	err := r.srv.Close()
	<-r.served
	r.srv = nil
	return err
}

// noDirFS serves files only: a directory listing is not metadata.
type noDirFS struct{ fs http.FileSystem }

func (n noDirFS) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}

// RotateKey replaces role's key (root, targets, snapshot or timestamp) with
// a new one in a new root version, signed by the old and the new root keys
// when the root key itself rotates, and publishes the root as
// <version>.root.json and root.json. Metadata signed afterwards uses the
// new key; call Publish to re-sign.
func (r *TUFRepo) RotateKey(role string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldRoot := r.signers[metadata.ROOT]
	for _, id := range slices.Clone(r.root.Signed.Roles[role].KeyIDs) {
		if err := r.root.Signed.RevokeKey(id, role); err != nil {
			return err
		}
	}
	key, err := r.newSigner(role)
	if err != nil {
		return err
	}
	if err := r.root.Signed.AddKey(key, role); err != nil {
		return err
	}
	r.root.Signed.Version++
	r.root.ClearSignatures()
	if role == metadata.ROOT {
		if _, err := r.root.Sign(oldRoot); err != nil {
			return err
		}
	}
	if _, err := r.root.Sign(r.signers[metadata.ROOT]); err != nil {
		return err
	}
	b, err := r.root.ToBytes(true)
	if err != nil {
		return err
	}
	for _, name := range []string{fmt.Sprintf("%d.root.json", r.root.Signed.Version), "root.json"} {
		if err := writeFileAtomic(filepath.Join(r.dir, name), b); err != nil {
			return err
		}
	}
	// Everything the rotated key signs must be signed again.
	if role == metadata.TARGETS {
		r.dirty[metadata.TARGETS] = true
	}
	return nil
}

// SetTimestampVersion sets the version the next Publish gives the
// timestamp minus one (a fast-forward recovery resets it after the
// timestamp key rotates).
func (r *TUFRepo) SetTimestampVersion(v int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timestamp.Signed.Version = v
}
