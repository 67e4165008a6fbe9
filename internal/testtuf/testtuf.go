// Package testtuf is the one builder of standard TUF repositories for
// trustd's tests, benchmarks and data sets: internal/gen writes its data
// sets with it, test/harness serves one to the e2e tests.
//
// It signs with go-tuf's own metadata API, not with trustd's publisher
// (cache/publish), on purpose: the tests and benchmarks of trustd's TUF
// reader then read metadata that trustd did not write, so a mistake shared
// by trustd's writer and reader cannot hide in a round trip.
package testtuf

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Options shape a repository.
type Options struct {
	// Expires is when every role's metadata expires.
	Expires time.Time
	// Compact writes metadata without indentation (data sets, where size
	// counts); the default is indented, as most repositories serve it.
	Compact bool
}

// Repo is a standard TUF repository (root, targets, snapshot, timestamp,
// optional delegated targets roles or succinct hash bins), signed with
// ed25519 keys made for it, written to a directory. consistent_snapshot is
// false: the metadata is root.json (and <N>.root.json), timestamp.json,
// snapshot.json, targets.json and <role>.json.
//
// Changes take effect on Publish. Methods are safe for concurrent use.
type Repo struct {
	mu       sync.Mutex
	dir      string // the metadata as served
	rootPath string // the initial root.json, to pin
	compact  bool

	signers   map[string]signature.Signer // by role name
	root      *metadata.Metadata[metadata.RootType]
	targets   map[string]*metadata.Metadata[metadata.TargetsType] // "targets" and delegated roles
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	succinct  *metadata.SuccinctRoles // the top-level role's hash bins, if any
	dirty     map[string]bool         // targets roles changed since the last Publish
	published bool                    // version 1 is written
}

// New makes the keys and version 1 of root of a repository in dir
// (created): the metadata in dir/metadata, the root to pin in
// dir/root.json. The first Publish writes version 1 of the other roles.
func New(dir string, o Options) (*Repo, error) {
	r := &Repo{
		dir:      filepath.Join(dir, "metadata"),
		rootPath: filepath.Join(dir, "root.json"),
		compact:  o.Compact,
		signers:  map[string]signature.Signer{},
		targets:  map[string]*metadata.Metadata[metadata.TargetsType]{},
		dirty:    map[string]bool{},
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	expires := o.Expires.UTC().Truncate(time.Second)
	r.root = metadata.Root(expires)
	r.root.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		key, err := r.newSigner(role)
		if err != nil {
			return nil, err
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			return nil, err
		}
	}
	r.targets[metadata.TARGETS] = metadata.Targets(expires)
	r.snapshot = metadata.Snapshot(expires)
	r.timestamp = metadata.Timestamp(expires)

	rootJSON, err := r.signAndEncode(r.root, r.signers[metadata.ROOT])
	if err != nil {
		return nil, err
	}
	for _, p := range []string{r.rootPath, filepath.Join(r.dir, "root.json"), filepath.Join(r.dir, "1.root.json")} {
		if err := WriteFileAtomic(p, rootJSON); err != nil {
			return nil, err
		}
	}
	r.dirty[metadata.TARGETS] = true
	return r, nil
}

// newSigner makes an ed25519 key for role and returns its public TUF key.
func (r *Repo) newSigner(role string) (*metadata.Key, error) {
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

// RootPath is the file holding version 1 of root.json: the root to pin.
func (r *Repo) RootPath() string { return r.rootPath }

// Dir is the directory holding the metadata files as served.
func (r *Repo) Dir() string { return r.dir }

// SetTarget signs manifest (image manifest or index bytes) for target name
// ("<normalised repository>:<tag>") in the top-level targets role.
func (r *Repo) SetTarget(name string, manifest []byte) error {
	return r.SetRoleTarget(metadata.TARGETS, name, digest.FromBytes(manifest), int64(len(manifest)))
}

// SetRoleTarget signs a manifest known by its sha256 digest and length for
// target name in role: "targets", a role AddDelegation made, or a hash bin
// (BinFor).
func (r *Repo) SetRoleTarget(role, name string, d digest.Digest, length int64) error {
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("target %s: digest %s is not sha256", name, d)
	}
	sum, err := hex.DecodeString(d.Encoded())
	if err != nil {
		return fmt.Errorf("target %s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	md, err := r.role(role)
	if err != nil {
		return err
	}
	md.Signed.Targets[name] = &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": sum}, Path: name}
	r.dirty[role] = true
	return nil
}

// RemoveTarget removes target name from the top-level targets role.
func (r *Repo) RemoveTarget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.targets[metadata.TARGETS].Signed.Targets, name)
	r.dirty[metadata.TARGETS] = true
}

// AddDelegation delegates the target paths (TUF glob patterns, matched per
// "/"-separated segment, e.g. "127.0.0.1:5000/team/*") from the top-level
// targets role to a new role with its own key.
func (r *Repo) AddDelegation(role string, paths []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.targets[role]; ok || role == metadata.ROOT || role == metadata.SNAPSHOT || role == metadata.TIMESTAMP {
		return fmt.Errorf("role %s already exists", role)
	}
	top := r.targets[metadata.TARGETS]
	if top.Signed.Delegations == nil {
		top.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	if top.Signed.Delegations.SuccinctRoles != nil {
		return fmt.Errorf("role %s: targets delegates to hash bins", role)
	}
	top.Signed.Delegations.Roles = append(top.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, KeyIDs: []string{}, Threshold: 1, Paths: slices.Clone(paths),
	})
	key, err := r.newSigner(role)
	if err != nil {
		return err
	}
	if err := top.Signed.AddKey(key, role); err != nil {
		return err
	}
	r.addRole(role, top.Signed.Expires)
	return nil
}

// addRole adds an empty targets role that the next Publish writes as
// version 1.
func (r *Repo) addRole(role string, expires time.Time) {
	r.targets[role] = metadata.Targets(expires)
	r.targets[role].Signed.Version = 0
	r.dirty[metadata.TARGETS] = true
	r.dirty[role] = true
}

// AddBins delegates every target of the top-level targets role to 2^bits
// succinct hash bins named "bin-<hex>" (TAP 15), all signed with one
// ed25519 key, and returns their names. BinFor names a target's bin.
func (r *Repo) AddBins(bits int) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	top := r.targets[metadata.TARGETS]
	if top.Signed.Delegations != nil {
		return nil, fmt.Errorf("targets already delegates")
	}
	const binsKey = "bins"
	key, err := r.newSigner(binsKey)
	if err != nil {
		return nil, err
	}
	id, err := key.ID()
	if err != nil {
		return nil, err
	}
	r.succinct = &metadata.SuccinctRoles{KeyIDs: []string{id}, Threshold: 1, BitLength: bits, NamePrefix: "bin"}
	top.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{id: key}, SuccinctRoles: r.succinct}
	names := r.succinct.GetRoles()
	for _, n := range names {
		r.signers[n] = r.signers[binsKey]
		r.addRole(n, top.Signed.Expires)
	}
	return names, nil
}

// BinFor is the hash bin of target name (AddBins first).
func (r *Repo) BinFor(name string) string {
	return r.succinct.GetRolesForTarget(name)[0].Name
}

func (r *Repo) role(name string) (*metadata.Metadata[metadata.TargetsType], error) {
	md, ok := r.targets[name]
	if !ok {
		return nil, fmt.Errorf("no targets role %s (AddDelegation first)", name)
	}
	return md, nil
}

// Publish signs and writes a new version of every targets role changed since
// the last Publish, then of snapshot and timestamp, the timestamp last, each
// file replaced atomically, so that a client never reads a half-written file.
// The first Publish writes version 1 of every role.
func (r *Repo) Publish() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	bump := r.published
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
		b, err := r.signAndEncode(md, r.signers[name])
		if err != nil {
			return fmt.Errorf("sign %s: %w", name, err)
		}
		if err := WriteFileAtomic(filepath.Join(r.dir, name+".json"), b); err != nil {
			return err
		}
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	clear(r.dirty)

	if bump {
		r.snapshot.Signed.Version++
	}
	snap, err := r.signAndEncode(r.snapshot, r.signers[metadata.SNAPSHOT])
	if err != nil {
		return fmt.Errorf("sign snapshot: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(r.dir, "snapshot.json"), snap); err != nil {
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
	ts, err := r.signAndEncode(r.timestamp, r.signers[metadata.TIMESTAMP])
	if err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(r.dir, "timestamp.json"), ts); err != nil {
		return err
	}
	r.published = true
	return nil
}

// signAndEncode replaces md's signatures with one by s and encodes it.
func (r *Repo) signAndEncode(md interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(pretty bool) ([]byte, error)
}, s signature.Signer) ([]byte, error) {
	md.ClearSignatures()
	if _, err := md.Sign(s); err != nil {
		return nil, err
	}
	return md.ToBytes(!r.compact)
}

// WriteFileAtomic writes b to a temporary file beside path and renames it
// over path, so that a reader (a TUF client, kubelet watching a directory)
// never sees a half-written file. The temporary file is hidden (".tmp-").
// It does not fsync: test data need not survive a crash.
func WriteFileAtomic(path string, b []byte) error {
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

// RotateKey replaces role's key (root, targets, snapshot or timestamp) with
// a new one in a new root version, signed by the old and the new root keys
// when the root key itself rotates, and publishes the root as
// <version>.root.json and root.json. Metadata signed afterwards uses the
// new key; call Publish to re-sign.
func (r *Repo) RotateKey(role string) error {
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
	b, err := r.root.ToBytes(!r.compact)
	if err != nil {
		return err
	}
	for _, name := range []string{fmt.Sprintf("%d.root.json", r.root.Signed.Version), "root.json"} {
		if err := WriteFileAtomic(filepath.Join(r.dir, name), b); err != nil {
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
func (r *Repo) SetTimestampVersion(v int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timestamp.Signed.Version = v
}
