package publish

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/cache"
)

// Top-level role names.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

// ErrNotRepo is matched by Open's error when DIR holds no repository.
var ErrNotRepo = errors.New("not a trustd repository")

// maxMetadataFile bounds every metadata file the repository reads back.
const maxMetadataFile = 256 << 20

// Expiry is how long each role's metadata stays valid once signed.
type Expiry struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry is root 1 year, targets (and delegated roles) 3 months,
// snapshot 7 days, timestamp 1 day.
var DefaultExpiry = Expiry{Root: 365 * 24 * time.Hour, Targets: 90 * 24 * time.Hour, Snapshot: 7 * 24 * time.Hour, Timestamp: 24 * time.Hour}

func (e Expiry) of(role string) time.Duration {
	switch role {
	case RoleRoot:
		return e.Root
	case RoleSnapshot:
		return e.Snapshot
	case RoleTimestamp:
		return e.Timestamp
	}
	return e.Targets
}

// config is DIR/repo.json: how the repository was made (not published).
type config struct {
	Format  int               `json:"format"`
	KeyDir  string            `json:"key_dir"`
	KeyType string            `json:"key_type"`
	Expires map[string]string `json:"expires"`
	// BinsThreshold is the number of targets past which a role's targets
	// move into hash bins (0: DefaultBinsThreshold).
	BinsThreshold int `json:"bins_threshold,omitempty"`
}

func (c *config) expiry() (Expiry, error) {
	e := DefaultExpiry
	for role, p := range map[string]*time.Duration{RoleRoot: &e.Root, RoleTargets: &e.Targets, RoleSnapshot: &e.Snapshot, RoleTimestamp: &e.Timestamp} {
		if s, ok := c.Expires[role]; ok {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return e, fmt.Errorf("repo.json: expiry of %s %q is not a positive duration", role, s)
			}
			*p = d
		}
	}
	return e, nil
}

// Options open a repository.
type Options struct {
	// KeyDir is the private key directory; "" means the one recorded at
	// init (DIR/keys by default).
	KeyDir string
	// Passphrase opens sealed private keys.
	Passphrase []byte
	// Keys are further private key files to sign with (a team's key, an
	// offline root key).
	Keys []string
	// Now is the signing time (default time.Now()).
	Now time.Time
	// BinsThreshold, when positive, replaces the repository's threshold
	// of targets past which a role moves into hash bins, for this Repo.
	BinsThreshold int
}

// Repo is an open repository, locked against other writers until Close.
// It is not safe for concurrent use. Every method that changes the
// repository either publishes a complete new version (see doc.go) or keeps
// its changes pending, and changes nothing when it returns an error
// before signing.
type Repo struct {
	Dir    string
	KeyDir string

	cfg    config
	expiry Expiry
	// binsThreshold: a role with more targets than this moves into hash
	// bins; a binned role gets more bins past this many per bin.
	binsThreshold int
	now           time.Time
	ring          *keyRing
	lock          *cache.Lock

	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	roles     map[string]*metadata.Metadata[metadata.TargetsType] // published targets and delegated roles
	parent    map[string]string                                   // delegated role → the role delegating to it

	pendingRoot *metadata.Metadata[metadata.RootType]
	pending     map[string]*metadata.Metadata[metadata.TargetsType]

	// needFreshTop makes the next save publish a new snapshot and
	// timestamp even when no other role changed (refresh).
	needFreshTop bool

	// afterStage, when set, runs after every file of a new version is
	// staged and before any is renamed into place (tests: a crash).
	afterStage func() error
}

func (r *Repo) metaDir() string    { return filepath.Join(r.Dir, "metadata") }
func (r *Repo) pendingDir() string { return filepath.Join(r.Dir, "pending") }

// validRole is the form of a delegated role name: it is a file name on
// the server, in URLs and on disk.
var validRole = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckRoleName reports whether name can name a delegated role.
func CheckRoleName(name string) error {
	switch {
	case slices.Contains(metadata.TOP_LEVEL_ROLE_NAMES[:], name):
		return fmt.Errorf("role name %q is a top-level role", name)
	case !validRole.MatchString(name):
		return fmt.Errorf("role name %q: use letters, digits, '.', '_' and '-' (at most 64, not starting with a punctuation mark)", name)
	}
	return nil
}

// Open opens the repository in dir and takes its lock. The published
// metadata is read back and checked (each role's signatures against its
// delegator); pending metadata older than what is published is dropped.
func Open(dir string, o Options) (*Repo, error) {
	data, err := os.ReadFile(filepath.Join(dir, "repo.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no repo.json: run trustd repo init first)", dir, ErrNotRepo)
	} else if err != nil {
		return nil, err
	}
	r := &Repo{Dir: dir, roles: map[string]*metadata.Metadata[metadata.TargetsType]{}, parent: map[string]string{}, pending: map[string]*metadata.Metadata[metadata.TargetsType]{}}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.cfg); err != nil || r.cfg.Format != 1 {
		return nil, fmt.Errorf("%s: repo.json: %w (format %d)", dir, errors.Join(err, ErrNotRepo), r.cfg.Format)
	}
	if r.expiry, err = r.cfg.expiry(); err != nil {
		return nil, err
	}
	r.binsThreshold = cmp.Or(o.BinsThreshold, r.cfg.BinsThreshold, DefaultBinsThreshold)
	if o.BinsThreshold < 0 || r.cfg.BinsThreshold < 0 {
		return nil, fmt.Errorf("%s: the hash bins threshold must be a positive number of targets", dir)
	}
	r.now = o.Now
	if r.now.IsZero() {
		r.now = time.Now()
	}
	r.now = r.now.UTC().Truncate(time.Second)
	r.KeyDir = o.KeyDir
	if r.KeyDir == "" {
		r.KeyDir = r.cfg.KeyDir
		if !filepath.IsAbs(r.KeyDir) {
			r.KeyDir = filepath.Join(dir, r.KeyDir)
		}
	}
	if r.lock, err = cache.LockDir(dir); err != nil {
		return nil, err
	}
	if err := r.load(o); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the repository's lock.
func (r *Repo) Close() error { return r.lock.Unlock() }

func (r *Repo) load(o Options) error {
	cache.RemoveStaleTempsIn(r.metaDir())
	var err error
	if r.ring, err = loadKeyDir(r.KeyDir, o.Passphrase); err != nil {
		return err
	}
	if _, err := r.ring.add(o.Keys); err != nil {
		return err
	}
	// The newest root, each checked against the one before.
	for v := int64(1); ; v++ {
		data, err := r.readMeta(fmt.Sprintf("%d.root.json", v))
		if errors.Is(err, os.ErrNotExist) && v > 1 {
			break
		} else if err != nil {
			return err
		}
		next, err := metadata.Root().FromBytes(data)
		if err != nil {
			return fmt.Errorf("%d.root.json: %w", v, err)
		}
		if r.root != nil {
			if err := r.root.VerifyDelegate(RoleRoot, next); err != nil {
				return fmt.Errorf("%d.root.json is not signed by the threshold of root version %d: %w", v, v-1, err)
			}
		}
		if err := next.VerifyDelegate(RoleRoot, next); err != nil {
			return fmt.Errorf("%d.root.json is not signed by its own threshold: %w", v, err)
		}
		r.root = next
	}
	data, err := r.readMeta("timestamp.json")
	if err != nil {
		return err
	}
	if r.timestamp, err = metadata.Timestamp().FromBytes(data); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	sm := r.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return errors.New("timestamp.json lists no snapshot.json")
	}
	if data, err = r.readMeta(fmt.Sprintf("%d.snapshot.json", sm.Version)); err != nil {
		return err
	}
	if r.snapshot, err = metadata.Snapshot().FromBytes(data); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for file, m := range r.snapshot.Signed.Meta {
		role := strings.TrimSuffix(file, ".json")
		data, err := r.readMeta(fmt.Sprintf("%d.%s", m.Version, file))
		if err != nil {
			return err
		}
		t, err := metadata.Targets().FromBytes(data)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		r.roles[role] = t
	}
	if r.roles[RoleTargets] == nil {
		return errors.New("the snapshot lists no targets.json")
	}
	for name, t := range r.roles {
		if t.Signed.Delegations == nil {
			continue
		}
		for _, d := range t.Signed.Delegations.Roles {
			r.parent[d.Name] = name
		}
	}
	return r.loadPending()
}

func (r *Repo) readMeta(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(r.metaDir(), name))
	if err != nil {
		return nil, fmt.Errorf("published metadata: %w", err)
	}
	if len(data) > maxMetadataFile {
		return nil, fmt.Errorf("published metadata %s is larger than %d bytes", name, maxMetadataFile)
	}
	return data, nil
}

func (r *Repo) loadPending() error {
	ents, err := os.ReadDir(r.pendingDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range ents {
		role, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.pendingDir(), e.Name()))
		if err != nil {
			return err
		}
		if role == RoleRoot {
			p, err := metadata.Root().FromBytes(data)
			if err != nil {
				return fmt.Errorf("pending root: %w", err)
			}
			if p.Signed.Version > r.root.Signed.Version {
				r.pendingRoot = p
			}
			continue
		}
		p, err := metadata.Targets().FromBytes(data)
		if err != nil {
			return fmt.Errorf("pending %s: %w", role, err)
		}
		if pub := r.roles[role]; pub == nil || p.Signed.Version > pub.Signed.Version {
			r.pending[role] = p
		}
	}
	return nil
}

// clone copies metadata through its JSON form.
func clone[T metadata.Roles](m *metadata.Metadata[T], fresh func() *metadata.Metadata[T]) *metadata.Metadata[T] {
	data, err := m.ToBytes(false)
	if err != nil {
		panic(err) // it was read from JSON or built in memory
	}
	c, err := fresh().FromBytes(data)
	if err != nil {
		panic(err)
	}
	return c
}

// workingRoot returns root's pending metadata, starting it from the
// published version (version + 1, no signatures) when there is none.
func (r *Repo) workingRoot() *metadata.Metadata[metadata.RootType] {
	if r.pendingRoot == nil {
		r.pendingRoot = clone(r.root, func() *metadata.Metadata[metadata.RootType] { return metadata.Root() })
		r.pendingRoot.Signed.Version++
		r.pendingRoot.ClearSignatures()
	}
	return r.pendingRoot
}

// ErrNoRole is matched when a command names a role the repository does not have.
var ErrNoRole = errors.New("no such role in the repository")

// changed marks role's pending metadata as modified: signatures made over
// the old content are dropped and the expiry restarts.
func (r *Repo) changed(role string, t *metadata.Metadata[metadata.TargetsType]) {
	t.ClearSignatures()
	t.Signed.Expires = r.now.Add(r.expiry.of(role))
}

// delegation returns the entry that lists role, as its delegator will
// publish it: from pending metadata when there is some, else published.
func (r *Repo) delegation(role string) (*metadata.DelegatedRole, map[string]*metadata.Key) {
	for _, src := range []map[string]*metadata.Metadata[metadata.TargetsType]{r.pending, r.roles} {
		for _, t := range src {
			if t.Signed.Delegations == nil {
				continue
			}
			for i := range t.Signed.Delegations.Roles {
				if d := &t.Signed.Delegations.Roles[i]; d.Name == role {
					return d, t.Signed.Delegations.Keys
				}
			}
			if sr := t.Signed.Delegations.SuccinctRoles; sr != nil && sr.IsDelegatedRole(role) {
				// A hash bin: terminating (TAP 15), the bins' keys.
				return &metadata.DelegatedRole{Name: role, KeyIDs: sr.KeyIDs, Threshold: sr.Threshold, Terminating: true}, t.Signed.Delegations.Keys
			}
		}
	}
	return nil, nil
}

// roleKeys returns the key IDs and threshold that may sign role, from
// the pending delegator when there is one (the keys a signature must come
// from to count once it is published), and from the published one too.
func (r *Repo) roleKeys(role string) (ids []string, threshold int, keys map[string]*metadata.Key) {
	keys = map[string]*metadata.Key{}
	add := func(rl *metadata.Role, ks map[string]*metadata.Key) {
		if rl == nil {
			return
		}
		for _, id := range rl.KeyIDs {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
			keys[id] = ks[id]
		}
		threshold = max(threshold, rl.Threshold)
	}
	switch role {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
		if r.pendingRoot != nil {
			add(r.pendingRoot.Signed.Roles[role], r.pendingRoot.Signed.Keys)
		}
		add(r.root.Signed.Roles[role], r.root.Signed.Keys)
	default:
		if d, ks := r.delegation(role); d != nil {
			add(&metadata.Role{KeyIDs: d.KeyIDs, Threshold: d.Threshold}, ks)
		}
	}
	return ids, threshold, keys
}

// signPending adds a signature to role's pending metadata with every key
// the ring holds that may sign it, except keys that signed already.
func (r *Repo) signPending(role string) error {
	ids, _, _ := r.roleKeys(role)
	var signed []string
	if role == RoleRoot {
		signed = sigIDs(r.pendingRoot.Signatures)
	} else {
		signed = sigIDs(r.pending[role].Signatures)
	}
	var todo []string
	for _, id := range ids {
		if !slices.Contains(signed, id) {
			todo = append(todo, id)
		}
	}
	signers, err := r.ring.signers(todo)
	if err != nil {
		return err
	}
	for _, s := range signers {
		if role == RoleRoot {
			_, err = r.pendingRoot.Sign(s)
		} else {
			_, err = r.pending[role].Sign(s)
		}
		if err != nil {
			return fmt.Errorf("signing %s: %w", role, err)
		}
	}
	return nil
}

func sigIDs(sigs []metadata.Signature) []string {
	var ids []string
	for _, s := range sigs {
		ids = append(ids, s.KeyID)
	}
	return ids
}

// validSignatures counts the signatures of md that verify under keys
// among ids (each key once).
func validSignatures(md any, sigs []metadata.Signature, ids []string, keys map[string]*metadata.Key) int {
	n := 0
	for _, id := range ids {
		if keys[id] == nil || !slices.Contains(sigIDs(sigs), id) {
			continue
		}
		one := metadata.Root()
		one.Signed.Keys[id] = keys[id]
		one.Signed.Roles["x"] = &metadata.Role{KeyIDs: []string{id}, Threshold: 1}
		if one.VerifyDelegate("x", md) == nil {
			n++
		}
	}
	return n
}

// plan decides what a save publishes: the pending root when both its
// predecessor's and its own thresholds signed it, and each pending role
// whose delegator (as it will be published) verifies it and whose own
// delegations all lead to metadata that is or will be published.
func (r *Repo) plan() (root bool, roles []string) {
	if p := r.pendingRoot; p != nil {
		root = r.root.VerifyDelegate(RoleRoot, p) == nil && p.VerifyDelegate(RoleRoot, p) == nil
	}
	rootAfter := r.root
	if root {
		rootAfter = r.pendingRoot
	}
	cand := map[string]bool{}
	for name := range r.pending {
		cand[name] = true
	}
	after := func(name string) *metadata.Metadata[metadata.TargetsType] {
		if cand[name] {
			return r.pending[name]
		}
		return r.roles[name]
	}
	for changed := true; changed; {
		changed = false
		for name := range cand {
			if !r.publishable(name, rootAfter, after, cand) {
				delete(cand, name)
				changed = true
			}
		}
	}
	for name := range cand {
		roles = append(roles, name)
	}
	sort.Strings(roles)
	return root, roles
}

// publishable reports whether pending role name verifies under its
// delegator as it will be published, and its delegations are complete.
func (r *Repo) publishable(name string, rootAfter *metadata.Metadata[metadata.RootType], after func(string) *metadata.Metadata[metadata.TargetsType], cand map[string]bool) bool {
	md := r.pending[name]
	if name == RoleTargets {
		if rootAfter.VerifyDelegate(name, md) != nil {
			return false
		}
	} else {
		var delegator *metadata.Metadata[metadata.TargetsType]
		for p := range r.delegators(name) {
			if p == "" {
				continue
			}
			if d := after(p); d != nil && delegates(d, name) {
				delegator = d
			}
		}
		if delegator == nil || delegator.VerifyDelegate(name, md) != nil {
			return false
		}
	}
	if md.Signed.Delegations != nil {
		for _, d := range md.Signed.Delegations.Roles {
			if r.roles[d.Name] == nil && !cand[d.Name] {
				return false
			}
		}
		if sr := md.Signed.Delegations.SuccinctRoles; sr != nil {
			for _, bin := range sr.GetRoles() {
				if r.roles[bin] == nil && !cand[bin] {
					return false
				}
			}
		}
	}
	return true
}

// delegators returns the roles (published or pending) that delegate to name.
func (r *Repo) delegators(name string) map[string]bool {
	out := map[string]bool{}
	for _, src := range []map[string]*metadata.Metadata[metadata.TargetsType]{r.pending, r.roles} {
		for p, t := range src {
			if delegates(t, name) {
				out[p] = true
			}
		}
	}
	return out
}

func delegates(t *metadata.Metadata[metadata.TargetsType], name string) bool {
	if t.Signed.Delegations == nil {
		return false
	}
	if sr := t.Signed.Delegations.SuccinctRoles; sr != nil && sr.IsDelegatedRole(name) {
		return true
	}
	for _, d := range t.Signed.Delegations.Roles {
		if d.Name == name {
			return true
		}
	}
	return false
}

// Saved says what a save did.
type Saved struct {
	// Published lists the roles of the new published version (with
	// snapshot and timestamp), empty when nothing was published.
	Published []string
	// Pending lists the roles that still wait for signatures, each with a
	// sentence saying what is missing.
	Pending []string
}

// save publishes what plan allows, as one new version of the repository,
// and keeps the rest pending.
func (r *Repo) save() (*Saved, error) {
	rootOK, ready := r.plan()
	out := &Saved{}
	var files []staged
	rootAfter := r.root
	if rootOK {
		data, err := r.pendingRoot.ToBytes(false)
		if err != nil {
			return nil, err
		}
		rootAfter = r.pendingRoot
		out.Published = append(out.Published, RoleRoot)
		files = append(files, staged{name: fmt.Sprintf("%d.root.json", r.pendingRoot.Signed.Version), data: data})
	}
	if rootOK || len(ready) > 0 || r.needFreshTop {
		snap := clone(r.snapshot, func() *metadata.Metadata[metadata.SnapshotType] { return metadata.Snapshot() })
		snap.Signed.Version++
		snap.Signed.Expires = r.now.Add(r.expiry.Snapshot)
		snap.ClearSignatures()
		var roleFiles []staged
		for _, name := range ready {
			md := r.pending[name]
			data, err := md.ToBytes(false)
			if err != nil {
				return nil, err
			}
			snap.Signed.Meta[name+".json"] = metaFile(md.Signed.Version, data)
			roleFiles = append(roleFiles, staged{name: fmt.Sprintf("%d.%s.json", md.Signed.Version, name), data: data})
			out.Published = append(out.Published, name)
		}
		if err := signTop(snap, rootAfter, RoleSnapshot, r.ring); err != nil {
			return nil, err
		}
		sdata, err := snap.ToBytes(false)
		if err != nil {
			return nil, err
		}
		ts := clone(r.timestamp, func() *metadata.Metadata[metadata.TimestampType] { return metadata.Timestamp() })
		ts.Signed.Version++
		ts.Signed.Expires = r.now.Add(r.expiry.Timestamp)
		ts.Signed.Meta["snapshot.json"] = metaFile(snap.Signed.Version, sdata)
		ts.ClearSignatures()
		if err := signTop(ts, rootAfter, RoleTimestamp, r.ring); err != nil {
			return nil, err
		}
		tdata, err := ts.ToBytes(false)
		if err != nil {
			return nil, err
		}
		// Roles first, then root (a client looks for N+1.root.json by
		// name), then the snapshot, the timestamp last: until it is in
		// place, clients see the previous version, whole.
		files = append(roleFiles, files...)
		files = append(files, staged{name: fmt.Sprintf("%d.snapshot.json", snap.Signed.Version), data: sdata}, staged{name: "timestamp.json", data: tdata})
		if err := r.publishFiles(files); err != nil {
			return nil, err
		}
		out.Published = append(out.Published, RoleSnapshot, RoleTimestamp)
		r.snapshot, r.timestamp, r.root = snap, ts, rootAfter
		for _, name := range ready {
			r.roles[name] = r.pending[name]
			delete(r.pending, name)
		}
		if rootOK {
			r.pendingRoot = nil
		}
		r.needFreshTop = false
		r.reparent()
	}
	if err := r.writePending(); err != nil {
		return out, err
	}
	out.Pending = r.pendingSummary()
	return out, nil
}

func (r *Repo) reparent() {
	r.parent = map[string]string{}
	for name, t := range r.roles {
		if t.Signed.Delegations == nil {
			continue
		}
		for _, d := range t.Signed.Delegations.Roles {
			r.parent[d.Name] = name
		}
	}
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	m := metadata.MetaFile(version)
	m.Length = int64(len(data))
	m.Hashes = metadata.Hashes{"sha256": sum[:]}
	return m
}

// signTop signs snapshot or timestamp metadata with the keys root lists
// for role, and checks the threshold.
func signTop[T metadata.Roles](md *metadata.Metadata[T], root *metadata.Metadata[metadata.RootType], role string, ring *keyRing) error {
	rl := root.Signed.Roles[role]
	signers, err := ring.signers(rl.KeyIDs)
	if err != nil {
		return err
	}
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			return fmt.Errorf("signing %s: %w", role, err)
		}
	}
	if err := root.VerifyDelegate(role, md); err != nil {
		return fmt.Errorf("%w: the key directory holds %d of the %d %s keys needed to publish (%v)", ErrThreshold, len(signers), rl.Threshold, role, err)
	}
	return nil
}

// ErrThreshold is matched when a role cannot get the signatures it needs
// from the keys at hand.
var ErrThreshold = errors.New("not enough signing keys")

// pendingSummary says, per pending role, what it waits for.
func (r *Repo) pendingSummary() []string {
	var out []string
	if p := r.pendingRoot; p != nil {
		oldN := validSignatures(p, p.Signatures, r.root.Signed.Roles[RoleRoot].KeyIDs, r.root.Signed.Keys)
		newN := validSignatures(p, p.Signatures, p.Signed.Roles[RoleRoot].KeyIDs, p.Signed.Keys)
		out = append(out, fmt.Sprintf("root version %d: %d of %d signatures of the current root keys, %d of %d of the new ones", p.Signed.Version,
			oldN, r.root.Signed.Roles[RoleRoot].Threshold, newN, p.Signed.Roles[RoleRoot].Threshold))
	}
	names := slices.Sorted(maps.Keys(r.pending))
	for _, n := range names {
		p := r.pending[n]
		ids, th, keys := r.roleKeys(n)
		have := validSignatures(p, p.Signatures, ids, keys)
		line := fmt.Sprintf("%s version %d: %d of %d signatures", n, p.Signed.Version, have, th)
		if have >= th && p.Signed.Delegations != nil {
			for _, d := range p.Signed.Delegations.Roles {
				if r.roles[d.Name] == nil {
					line += fmt.Sprintf("; waits for role %s's first signed version (trustd repo sign-metadata DIR %s --key KEY)", d.Name, d.Name)
				}
			}
		}
		out = append(out, line)
	}
	return out
}

// writePending writes the pending metadata (with the signatures it has)
// and removes the files of what is no longer pending.
func (r *Repo) writePending() error {
	want := map[string][]byte{}
	if r.pendingRoot != nil {
		data, err := r.pendingRoot.ToBytes(true)
		if err != nil {
			return err
		}
		want[RoleRoot+".json"] = data
	}
	for n, p := range r.pending {
		data, err := p.ToBytes(true)
		if err != nil {
			return err
		}
		want[n+".json"] = data
	}
	dir := r.pendingDir()
	if len(want) > 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if _, ok := want[e.Name()]; !ok && strings.HasSuffix(e.Name(), ".json") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for name, data := range want {
		if old, err := os.ReadFile(filepath.Join(dir, name)); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := writeFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// staged is one file of a new published version.
type staged struct {
	name string
	data []byte
	tmp  string
}

// publishFiles writes files into the published tree crash-safely: every
// file is first written to a temporary name and fsynced; then they are
// renamed into place in order (timestamp.json last) and the directory is
// fsynced. Temporary names start with '.', which no client requests.
func (r *Repo) publishFiles(files []staged) error {
	dir := r.metaDir()
	cleanup := func() {
		for _, f := range files {
			if f.tmp != "" {
				os.Remove(f.tmp)
			}
		}
	}
	for i := range files {
		tmp, err := stageFile(dir, files[i].name, files[i].data, 0o644)
		if err != nil {
			cleanup()
			return err
		}
		files[i].tmp = tmp
	}
	if r.afterStage != nil {
		if err := r.afterStage(); err != nil {
			return err // the staged files stay, as a crash leaves them
		}
	}
	if err := syncDir(dir); err != nil {
		cleanup()
		return err
	}
	for i, f := range files {
		if err := os.Rename(f.tmp, filepath.Join(dir, f.name)); err != nil {
			for _, g := range files[i:] {
				os.Remove(g.tmp)
			}
			return fmt.Errorf("publish %s: %w", f.name, err)
		}
		if f.name == "timestamp.json" || i == len(files)-2 {
			// Everything the timestamp points to is durable before it is.
			if err := syncDir(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageFile writes data to a new temporary file in dir and fsyncs it.
func stageFile(dir, name string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return f.Name(), nil
}

// writeFile replaces path with data crash-safely (stage, fsync, rename,
// fsync the directory).
func writeFile(path string, data []byte, perm os.FileMode) error {
	return cache.WriteFileAtomic(path, data, perm)
}

func syncDir(dir string) error { return cache.SyncDir(dir) }
