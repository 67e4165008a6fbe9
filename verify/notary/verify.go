package notary

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/verify"
)

// Timestamp is a verified timestamp.json. It is immutable and safe for
// concurrent use.
type Timestamp struct {
	env  *envelope
	body *timestampBody
}

// Version is the timestamp's version.
func (t *Timestamp) Version() int { return t.body.version }

// Expires is the timestamp's expiry.
func (t *Timestamp) Expires() time.Time { return t.body.expires }

// SnapshotMeta is the length and hashes of snapshot.json that the timestamp
// signed: download at most Length bytes.
func (t *Timestamp) SnapshotMeta() Meta { return t.body.snapshot.clone() }

// Snapshot is a verified snapshot.json. It is immutable and safe for
// concurrent use.
type Snapshot struct {
	env  *envelope
	body *snapshotBody
}

// Version is the snapshot's version.
func (s *Snapshot) Version() int { return s.body.version }

// Expires is the snapshot's expiry.
func (s *Snapshot) Expires() time.Time { return s.body.expires }

// Meta is the length and hashes the snapshot signed for role ("root",
// "targets", "targets/releases", ...): download at most Length bytes.
func (s *Snapshot) Meta(role string) (Meta, bool) {
	m, ok := s.body.meta[role]
	if !ok {
		return Meta{}, false
	}
	return m.clone(), true
}

// Roles lists, sorted, the targets roles the snapshot has metadata for
// ("targets" and delegations): the files to fetch besides root, timestamp
// and snapshot. Which delegations are actually used is decided by Verify.
func (s *Snapshot) Roles() []string {
	var out []string
	for name := range s.body.meta {
		if name == roleTargets || isDelegation(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// VerifyTimestamp verifies timestamp.json against the root: threshold of
// the root's timestamp keys, no rollback below prev, not expired at the
// reference time. It is pure and safe for concurrent use.
func (r *Root) VerifyTimestamp(b []byte, prev *Trusted) (*Timestamp, error) {
	gun := r.opts.GUN
	env, body, err := parseTimestamp(b)
	if err != nil {
		return nil, malformed(gun, roleTimestamp, err)
	}
	if err := r.checkTopRole(roleTimestamp, env, body.common, prev); err != nil {
		return nil, err
	}
	return &Timestamp{env: env, body: body}, nil
}

// VerifySnapshot verifies snapshot.json: it must be the file the timestamp
// describes (length and hashes), be signed by a threshold of the root's
// snapshot keys, not roll back below prev, not be expired, and list the
// hashes of this very root.json. It is pure and safe for concurrent use.
func (r *Root) VerifySnapshot(b []byte, ts *Timestamp, prev *Trusted) (*Snapshot, error) {
	gun := r.opts.GUN
	if err := ts.body.snapshot.Check(b); err != nil {
		return nil, fmt.Errorf("notary %s: snapshot: not the file the timestamp (version %d) signed: %w", gun, ts.body.version, err)
	}
	env, body, err := parseSnapshot(b)
	if err != nil {
		return nil, malformed(gun, roleSnapshot, err)
	}
	if err := r.checkTopRole(roleSnapshot, env, body.common, prev); err != nil {
		return nil, err
	}
	if err := body.meta[roleRoot].checkHashes(r.raw); err != nil {
		return nil, fmt.Errorf("notary %s: root: not the root.json the snapshot (version %d) lists: %w", gun, body.version, err)
	}
	return &Snapshot{env: env, body: body}, nil
}

// checkTopRole checks signatures (threshold of the root's keys for role),
// version against prev and expiry, in Notary's order.
func (r *Root) checkTopRole(role string, env *envelope, c common, prev *Trusted) error {
	gun := r.opts.GUN
	rk := r.body.roles[role]
	auth, notes := roleAuth(rk.keyIDs, r.body.keys)
	if sc := checkSigs(env, role, rk.keyIDs, rk.threshold, auth, notes); !sc.ok() {
		return sc.errf(gun, "")
	}
	tv, td := prev.version(role)
	if err := checkVersion(gun, role, c.version, env.digest, tv, td); err != nil {
		return err
	}
	return checkExpiry(gun, role, c.expires, r.opts.Now)
}

// Files holds the bytes of one repository's metadata as served by Notary.
type Files struct {
	Root, Timestamp, Snapshot, Targets []byte
	// Delegations maps a delegated role name ("targets/releases") to its
	// file. Every delegation the snapshot lists should be supplied.
	Delegations map[string][]byte
}

// RoleKeys describes who may sign for a role, for `trustd inspect`.
type RoleKeys struct {
	Role      string   `json:"role"`
	KeyIDs    []string `json:"key_ids"`
	Threshold int      `json:"threshold"`
	// Paths are the delegation's effective path prefixes, restricted to its
	// parent's as Notary does; nil for top-level roles.
	Paths            []string `json:"paths,omitempty"`
	PathHashPrefixes []string `json:"path_hash_prefixes,omitempty"`
	// Version and Expires of the role's metadata when it was verified.
	Version int       `json:"version,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// Ignored says why a delegation was not used (expired, under threshold,
	// not in the snapshot); empty when it was verified and used.
	Ignored string `json:"ignored,omitempty"`
}

// Keys summarises the keys of a verified repository.
type Keys struct {
	Root      RoleKeys `json:"root"`
	RootCerts []Cert   `json:"root_certs"`
	Targets   RoleKeys `json:"targets"`
	Snapshot  RoleKeys `json:"snapshot"`
	Timestamp RoleKeys `json:"timestamp"`
	// Delegations in the order Notary walks them (breadth first, in the
	// order each parent lists them).
	Delegations []RoleKeys `json:"delegations,omitempty"`
}

// Result is the outcome of a successful verification. It is never modified
// after Verify returns.
type Result struct {
	// Repo is the verified trust data, for the decision path.
	Repo *verify.Repo
	// Keys summarises who signs what.
	Keys Keys
	// State is what to persist and pass as prev next time.
	State Trusted
}

// Verify verifies a whole repository at o.Now: root (pinning, rotation from
// prev.Root), timestamp, snapshot, targets and every delegation reachable
// from targets, and returns the signed tags. prev is the previously trusted
// state (nil on first use); versions below it are refused.
//
// Fatal (an error): any problem with root, timestamp, snapshot or targets; a
// delegation file whose length or hashes differ from the snapshot's, that is
// malformed, that rolls back, or that the snapshot lists but is not
// supplied. Not fatal (reported in Repo.Problems, the delegation and its
// children ignored, as Notary's client does): a delegation that is expired,
// under threshold or badly signed, or that the snapshot does not list.
//
// Verify is pure and safe for concurrent use; it does not retain f.
func Verify(f Files, prev *Trusted, o Options) (*Result, error) {
	root, err := VerifyRoot(f.Root, prev, o)
	if err != nil {
		return nil, err
	}
	ts, err := root.VerifyTimestamp(f.Timestamp, prev)
	if err != nil {
		return nil, err
	}
	sn, err := root.VerifySnapshot(f.Snapshot, ts, prev)
	if err != nil {
		return nil, err
	}
	return root.verifyTargets(ts, sn, f.Targets, f.Delegations, prev)
}

// node is a targets role in the delegation tree.
type node struct {
	name      string
	parent    *node
	d         delegation // how the parent delegated it (zero for targets)
	paths     []string   // effective path prefixes (restricted to the parent's)
	useHashes bool       // scope by d.hashPrefixes instead of paths
	env       *envelope
	body      *targetsBody
}

// inScope reports whether a target name is within the role's delegated
// scope and that of all its ancestors.
func (n *node) inScope(name string) bool {
	for ; n != nil; n = n.parent {
		if n.useHashes {
			sum := sha256.Sum256([]byte(name))
			h := hex.EncodeToString(sum[:])
			ok := false
			for _, p := range n.d.hashPrefixes {
				if strings.HasPrefix(h, p) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
			continue
		}
		ok := false
		for _, p := range n.paths {
			if strings.HasPrefix(name, p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// restrict is Notary's DelegationRole.Restrict / RestrictDelegationPathPrefixes:
// a child's paths are kept only when one of the parent's effective paths is
// a prefix of them. Under a parent scoped by hash prefixes, the child's paths
// are kept and inScope checks the parent's scope too.
func restrict(parent *node, child delegation) (kept, dropped []string) {
	if parent.useHashes {
		return append([]string(nil), child.paths...), nil
	}
	for _, p := range child.paths {
		ok := false
		for _, pp := range parent.paths {
			if strings.HasPrefix(p, pp) {
				ok = true
				break
			}
		}
		if ok {
			kept = append(kept, p)
		} else {
			dropped = append(dropped, p)
		}
	}
	return kept, dropped
}

func (r *Root) verifyTargets(ts *Timestamp, sn *Snapshot, targets []byte, dels map[string][]byte, prev *Trusted) (*Result, error) {
	gun, now := r.opts.GUN, r.opts.Now
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if err := sn.body.meta[roleTargets].Check(targets); err != nil {
		return nil, fmt.Errorf("notary %s: targets: not the file the snapshot (version %d) signed: %w", gun, sn.body.version, err)
	}
	env, body, err := parseTargets(targets, roleTargets)
	if err != nil {
		return nil, malformed(gun, roleTargets, err)
	}
	if err := r.checkTopRole(roleTargets, env, body.common, prev); err != nil {
		return nil, err
	}
	top := &node{name: roleTargets, paths: []string{""}, env: env, body: body}

	state := Trusted{Root: append([]byte(nil), r.raw...), Versions: map[string]int{}, Digests: map[string]string{}}
	record := func(role string, e *envelope, version int) {
		state.Versions[role], state.Digests[role] = version, e.digest
	}
	record(roleRoot, r.env, r.body.version)
	record(roleTimestamp, ts.env, ts.body.version)
	record(roleSnapshot, sn.env, sn.body.version)
	record(roleTargets, env, body.version)

	expires, expiresRole := r.Expires(), roleRoot
	earliest := func(t time.Time, role string) {
		if t.Before(expires) {
			expires, expiresRole = t, role
		}
	}
	earliest(ts.body.expires, roleTimestamp)
	earliest(sn.body.expires, roleSnapshot)
	earliest(body.expires, roleTargets)

	var keys Keys
	keys.Root = roleKeysOf(roleRoot, r.body.roles[roleRoot])
	keys.RootCerts = r.Certs()
	keys.Timestamp = roleKeysOf(roleTimestamp, r.body.roles[roleTimestamp])
	keys.Snapshot = roleKeysOf(roleSnapshot, r.body.roles[roleSnapshot])
	keys.Targets = roleKeysOf(roleTargets, r.body.roles[roleTargets])
	keys.Root.Version, keys.Root.Expires = r.body.version, r.body.expires
	keys.Timestamp.Version, keys.Timestamp.Expires = ts.body.version, ts.body.expires
	keys.Snapshot.Version, keys.Snapshot.Expires = sn.body.version, sn.body.expires
	keys.Targets.Version, keys.Targets.Expires = body.version, body.expires

	// Walk the delegation tree breadth first, children in the order their
	// parent lists them: the order of Notary's tuf.Repo.WalkTargets.
	order := []*node{top}
	reached := map[string]bool{}
	walked := 0
	for queue := []*node{top}; len(queue) > 0; {
		parent := queue[0]
		queue = queue[1:]
		for _, d := range parent.body.delegations {
			walked++
			if walked > maxWalked {
				return nil, fail(gun, d.name, ErrMalformed, "more than %d delegations", maxWalked)
			}
			reached[d.name] = true
			child := &node{name: d.name, parent: parent, d: d}
			rk := RoleKeys{Role: d.name, KeyIDs: d.keyIDs, Threshold: d.threshold}
			ignore := func(format string, args ...any) {
				rk.Ignored = fmt.Sprintf(format, args...)
				problem("%s: ignored: %s", d.name, rk.Ignored)
			}
			if d.hasPaths || len(d.hashPrefixes) == 0 {
				var dropped []string
				child.paths, dropped = restrict(parent, d)
				if len(dropped) > 0 {
					problem("%s: paths %s are outside its parent %s's paths %s and are ignored", d.name, quoted(dropped), parent.name, quoted(parent.paths))
				}
				rk.Paths = append([]string{}, child.paths...)
			} else {
				child.useHashes = true
				rk.PathHashPrefixes = d.hashPrefixes
			}
			if err := func() error {
				meta, ok := sn.body.meta[d.name]
				if !ok {
					ignore("the snapshot (version %d) does not list it", sn.body.version)
					return nil
				}
				b, ok := dels[d.name]
				if !ok {
					return fail(gun, d.name, ErrMissing, "the snapshot (version %d) lists it and %s delegates to it, but its file was not supplied", sn.body.version, parent.name)
				}
				if err := meta.Check(b); err != nil {
					return fmt.Errorf("notary %s: %s: not the file the snapshot (version %d) signed: %w", gun, d.name, sn.body.version, err)
				}
				denv, dbody, err := parseTargets(b, d.name)
				if err != nil {
					return malformed(gun, d.name, err)
				}
				auth, notes := roleAuth(d.keyIDs, parent.body.keys)
				if sc := checkSigs(denv, d.name, d.keyIDs, d.threshold, auth, notes); !sc.ok() {
					ignore("%s", strings.TrimPrefix(sc.errf(gun, "").Error(), fmt.Sprintf("notary %s: %s: ", gun, d.name)))
					return nil
				}
				tv, td := prev.version(d.name)
				if err := checkVersion(gun, d.name, dbody.version, denv.digest, tv, td); err != nil {
					return err
				}
				rk.Version, rk.Expires = dbody.version, dbody.expires
				if err := checkExpiry(gun, d.name, dbody.expires, now); err != nil {
					ignore("expired at %s", dbody.expires.UTC().Format(time.RFC3339))
					return nil
				}
				for _, k := range d.keyIDs {
					if kk := auth[k]; kk != nil && len(kk.certs) > 0 && now.After(kk.certs[0].NotAfter) {
						problem("%s: certificate of key %s expired at %s; accepted, as Notary does not check delegation certificates", d.name, k, kk.certs[0].NotAfter.UTC().Format(time.RFC3339))
					}
				}
				child.env, child.body = denv, dbody
				record(d.name, denv, dbody.version)
				earliest(dbody.expires, d.name)
				queue = append(queue, child)
				order = append(order, child)
				return nil
			}(); err != nil {
				return nil, err
			}
			keys.Delegations = append(keys.Delegations, rk)
		}
	}
	// Keep the trusted versions of delegations that still exist but were
	// ignored this time, so that they cannot roll back later.
	if prev != nil {
		for role, v := range prev.Versions {
			if _, ok := state.Versions[role]; !ok && reached[role] {
				state.Versions[role] = v
				if d, ok := prev.Digests[role]; ok {
					state.Digests[role] = d
				}
			}
		}
	}
	var unused []string
	for name := range dels {
		if !reached[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	for _, name := range unused {
		problem("%s: ignored: no verified role delegates to it", name)
	}

	// Docker resolves a tag in targets/releases (and its subtree) first,
	// then targets; other delegations follow in walk order.
	var resolution []*node
	for _, n := range order {
		if n.name == roleReleases || strings.HasPrefix(n.name, roleReleases+"/") {
			resolution = append(resolution, n)
		}
	}
	resolution = append(resolution, top)
	for _, n := range order[1:] {
		if n.name != roleReleases && !strings.HasPrefix(n.name, roleReleases+"/") {
			resolution = append(resolution, n)
		}
	}

	repo := &verify.Repo{
		Source:      r.opts.Source,
		Name:        r.opts.RepoName,
		Tags:        map[string]verify.RoleTargets{},
		Order:       map[string][]string{},
		Expires:     expires,
		ExpiresRole: expiresRole,
	}
	if repo.Name == "" {
		repo.Name = gun
	}
	for _, n := range resolution {
		names := make([]string, 0, len(n.body.targets))
		for name := range n.body.targets {
			names = append(names, name)
		}
		sort.Strings(names)
		var outside, nohash []string
		for _, name := range names {
			m := n.body.targets[name]
			if !n.inScope(name) {
				outside = append(outside, name)
				continue
			}
			h, ok := m.Hashes["sha256"]
			if !ok || len(h) != sha256.Size || m.Length < 0 {
				nohash = append(nohash, name)
				continue
			}
			rt := repo.Tags[name]
			if rt == nil {
				rt = verify.RoleTargets{}
				repo.Tags[name] = rt
			}
			rt[n.name] = verify.Target{Digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h)), Length: m.Length}
			repo.Order[name] = append(repo.Order[name], n.name)
		}
		if len(outside) > 0 {
			problem("%s: %d targets outside its delegated paths ignored: %s", n.name, len(outside), sample(outside))
		}
		if len(nohash) > 0 {
			problem("%s: %d targets without a sha256 hash or with a negative length ignored: %s", n.name, len(nohash), sample(nohash))
		}
	}
	repo.Problems = problems
	return &Result{Repo: repo, Keys: keys, State: state}, nil
}

func sample(names []string) string {
	const n = 5
	if len(names) <= n {
		return quoted(names)
	}
	return quoted(names[:n]) + fmt.Sprintf(" and %d more", len(names)-n)
}

func roleKeysOf(role string, rk roleKeys) RoleKeys {
	return RoleKeys{Role: role, KeyIDs: append([]string(nil), rk.keyIDs...), Threshold: rk.threshold}
}
