package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/trustd/trustd/verify"
)

// Size bounds for standard TUF metadata downloads.
const (
	maxRootSize        = 512 << 10
	maxTimestampSize   = 16 << 10
	maxSnapshotSize    = 32 << 20
	maxTargetsSize     = 64 << 20
	maxRootRotations   = 256
	maxDelegations     = 1 << 14
	maxBundleFileBytes = 1 << 30
)

// RoleFile is one delegated targets role as stored: its bytes and the
// first role found to delegate to it (informational: each delegation is
// verified on its own), or, for a role that could not be loaded (not
// fetched, not listed in the snapshot, expired), why. Resolution denies
// the targets in such a role's paths.
type RoleFile struct {
	Name      string `json:"name"`
	Delegator string `json:"delegator"`
	Data      []byte `json:"data,omitempty"`
	Error     string `json:"error,omitempty"`
}

// TUFBundle is the verified metadata of one standard TUF repository, as
// stored in the cache: everything needed to re-verify it offline from the
// pinned root. Byte slices hold the metadata exactly as signed.
type TUFBundle struct {
	Format      int        `json:"format"`
	Source      string     `json:"source"`
	URL         string     `json:"url"`
	Verified    time.Time  `json:"verified"`
	Roots       [][]byte   `json:"roots,omitempty"` // root versions after the pinned root, in order
	Timestamp   []byte     `json:"timestamp"`
	Snapshot    []byte     `json:"snapshot"`
	Targets     []byte     `json:"targets"`
	Delegations []RoleFile `json:"delegations,omitempty"` // parents before children
}

// TUFSource is a standard TUF repository named in the policy.
type TUFSource struct {
	Name string
	// URL is the metadata base URL, ending in '/'.
	URL string
	// Root is the initial trusted root.json (pinned by the policy).
	Root []byte
	// Dir is this source's directory in the cache.
	Dir     string
	Fetcher Fetcher
	// RootCheckInterval is how long an unchanged timestamp is taken to
	// mean an unchanged repository without probing for a new root (see
	// Sync). 0 means DefaultRootCheckInterval; a negative value probes on
	// every sync.
	RootCheckInterval time.Duration
}

// DefaultRootCheckInterval is the default TUFSource.RootCheckInterval.
const DefaultRootCheckInterval = time.Hour

func (s *TUFSource) bundlePath() string { return filepath.Join(s.Dir, "tuf.json") }

// Load verifies the cached bundle offline, from the pinned root, and
// returns its index. Expiry is not checked here: the decision checks it
// against its own clock, so that expired data is refused with a reason
// instead of vanishing. A bundle that fails verification is moved aside
// (and reported in the error) so that the next sync fetches afresh.
func (s *TUFSource) Load() (*verify.SourceIndex, error) {
	// The derived index, when it matches the bundle's bytes and the pinned
	// root, is the verified index: no need to read the bundle itself.
	key, err := derivedKeyOfFile(s.bundlePath(), s.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("source %q: %w", s.Name, ErrNoData)
	}
	pr := s.readProgress()
	if err == nil && len(pr.Roots) == 0 {
		if d, err := readDerived(s.derivedPath(), key); err == nil {
			return s.indexOf(d), nil
		}
	}
	raw, b, err := s.readBundleRaw()
	if err != nil {
		return nil, err
	}
	tm, del, err := s.verifyBundle(b, time.Time{})
	if err != nil {
		removeDerived(s.derivedPath())
		aside := s.moveAside(err)
		return nil, fmt.Errorf("cached trust data of source %q failed verification (%s): %w", s.Name, aside, err)
	}
	if len(pr.Roots) > 0 {
		return s.underNewerRoots(b, pr.Roots)
	}
	d := s.derive(tm, del, b.Verified, derivedKey(raw, s.Root))
	_ = s.writeDerived(d)
	return s.indexOf(d), nil
}

// underNewerRoots is the index of the complete bundle b verified under
// the roots a later, incomplete refresh kept: data signed by keys those
// roots revoked is no longer trusted (an error, which decisions report).
func (s *TUFSource) underNewerRoots(b *TUFBundle, roots [][]byte) (*verify.SourceIndex, error) {
	nb := *b
	nb.Roots = append(append([][]byte(nil), b.Roots...), roots...)
	tm, del, err := s.verifyBundle(&nb, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("source %q: the last complete trust data does not verify under the newer root a refresh verified (keys revoked?), and no refresh has completed since: %w", s.Name, err)
	}
	return s.indexOf(s.derive(tm, del, b.Verified, "")), nil
}

// writeDerived writes the derived index (removing the temporary files of
// an interrupted write first).
func (s *TUFSource) writeDerived(d *derivedIndex) error {
	RemoveStaleTemps(s.derivedPath())
	return writeDerived(s.derivedPath(), d)
}

func (s *TUFSource) derivedPath() string { return s.bundlePath() + ".index" }

func (s *TUFSource) readBundle() (*TUFBundle, error) {
	_, b, err := s.readBundleRaw()
	return b, err
}

func (s *TUFSource) readBundleRaw() ([]byte, *TUFBundle, error) {
	data, err := readFileLimit(s.bundlePath(), maxBundleFileBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("source %q: %w", s.Name, ErrNoData)
		}
		return nil, nil, err
	}
	var b TUFBundle
	if err := json.Unmarshal(data, &b); err != nil || b.Format != 1 {
		if err == nil {
			err = fmt.Errorf("unknown format %d", b.Format)
		}
		aside := s.moveAside(err)
		return nil, nil, fmt.Errorf("cached trust data of source %q is unreadable (%s): %w", s.Name, aside, err)
	}
	return data, &b, nil
}

// ErrNoData means a source has nothing in the cache yet.
var ErrNoData = errors.New("no trust data cached yet")

func (s *TUFSource) moveAside(reason error) string { return moveAside(s.bundlePath()) }

// verifyBundle verifies the top-level metadata of b from the pinned root
// at ref (the zero time: no expiry check) and loads its delegated roles.
// A delegated role that does not load is no error: it is recorded in the
// TUFDelegations, and resolution denies the targets in its paths.
func (s *TUFSource) verifyBundle(b *TUFBundle, ref time.Time) (*trustedmetadata.TrustedMetadata, verify.TUFDelegations, error) {
	var del verify.TUFDelegations
	tm, err := trustedmetadata.New(s.Root)
	if err != nil {
		return nil, del, fmt.Errorf("pinned root: %w", err)
	}
	for i, r := range b.Roots {
		if _, err := tm.UpdateRoot(r); err != nil {
			return nil, del, fmt.Errorf("cached root %d: %w", i, err)
		}
	}
	tm.RefTime = ref
	if _, err := tm.UpdateTimestamp(b.Timestamp); err != nil {
		return nil, del, fmt.Errorf("timestamp: %w", err)
	}
	if _, err := tm.UpdateSnapshot(b.Snapshot, false); err != nil {
		return nil, del, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := tm.UpdateTargets(b.Targets); err != nil {
		return nil, del, fmt.Errorf("targets: %w", err)
	}
	del = newDelegations()
	for _, d := range b.Delegations {
		if d.Error != "" {
			del.Failed[d.Name] = d.Error
			continue
		}
		md, err := checkRole(tm, d.Name, d.Data)
		if err != nil {
			del.Failed[d.Name] = err.Error()
			continue
		}
		del.Roles[d.Name] = md
	}
	return tm, del, nil
}

func newDelegations() verify.TUFDelegations {
	return verify.TUFDelegations{Roles: map[string]*metadata.Metadata[metadata.TargetsType]{}, Failed: map[string]string{}}
}

// checkRole makes the checks on a delegated role's metadata that do not
// depend on its delegator (go-tuf's UpdateDelegatedTargets without the
// signatures, which verify.IndexTUF checks against each delegator):
// listed in the trusted snapshot, with its length and hashes, of type
// targets, of the version the snapshot lists, not expired at tm.RefTime.
func checkRole(tm *trustedmetadata.TrustedMetadata, role string, data []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	meta := tm.Snapshot.Signed.Meta[role+".json"]
	if meta == nil {
		return nil, fmt.Errorf("snapshot lists no %s.json", role)
	}
	if err := meta.VerifyLengthHashes(data); err != nil {
		return nil, err
	}
	md, err := metadata.Targets().FromBytes(data)
	if err != nil {
		return nil, err
	}
	if md.Signed.Type != metadata.TARGETS {
		return nil, fmt.Errorf("expected %s, got %s", metadata.TARGETS, md.Signed.Type)
	}
	if md.Signed.Version != meta.Version {
		return nil, &metadata.ErrBadVersionNumber{Msg: fmt.Sprintf("expected %s version %d, got %d", role, meta.Version, md.Signed.Version)}
	}
	if md.Signed.IsExpired(tm.RefTime) {
		return nil, &metadata.ErrExpiredMetadata{Msg: fmt.Sprintf("%s is expired", role)}
	}
	return md, nil
}

// derive indexes verified metadata: the Trust decisions read, with the
// version summary, ready to be written as the derived index.
func (s *TUFSource) derive(tm *trustedmetadata.TrustedMetadata, del verify.TUFDelegations, verified time.Time, key string) *derivedIndex {
	repos, problems := verify.IndexTUF(s.Name, tm, del)
	for _, r := range repos {
		r.Problems = problems
	}
	d := &derivedIndex{Key: key, Version: versionOf(tm, del), Verified: verified, Trust: verify.NewTrust(repos)}
	if failed := verify.FailedTUFRoles(tm, del); len(failed) > 0 {
		d.Extra, _ = json.Marshal(failed)
	}
	return d
}

// versionOf summarises what verified metadata rests on.
func versionOf(tm *trustedmetadata.TrustedMetadata, del verify.TUFDelegations) string {
	ver := fmt.Sprintf("root v%d, timestamp v%d, snapshot v%d, targets v%d", tm.Root.Signed.Version, tm.Timestamp.Signed.Version, tm.Snapshot.Signed.Version, tm.Targets[metadata.TARGETS].Signed.Version)
	if n := len(del.Roles); n > 0 {
		ver += fmt.Sprintf(", %d delegated roles", n)
	}
	if n := len(del.Failed); n > 0 {
		ver += fmt.Sprintf(", %d delegated roles not loaded", n)
	}
	return ver
}

// indexOf is the source index of a derived index.
func (s *TUFSource) indexOf(d *derivedIndex) *verify.SourceIndex {
	si := verify.NewSourceIndexOf(s.Name, "tuf", d.Trust)
	si.Version, si.Updated = d.Version, d.Verified
	if len(d.Extra) > 0 {
		// Written by derive from verified metadata; a derived index is
		// believed only while its key matches the bundle (derived.go).
		if err := json.Unmarshal(d.Extra, &si.Failed); err != nil {
			si.Failed = nil
		}
	}
	return si
}

// SyncResult says what one sync of a source did: the one record of it,
// from the source's Sync (Changed, Index, Summary) through the store's
// SyncSource (Source, OK, Error, Unreachable) to `trustd sync`, the daemon,
// its status and its metrics.
type SyncResult struct {
	Source  string `json:"source"`
	OK      bool   `json:"ok"`
	Changed bool   `json:"changed"`
	Summary string `json:"summary,omitempty"`
	Error   string `json:"error,omitempty"`
	// Unreachable: the source could not be reached (offline grace may apply).
	Unreachable bool `json:"unreachable,omitempty"`
	// Index is the source's new index, when the sync (or part of it)
	// verified.
	Index *verify.SourceIndex `json:"-"`
}

// Sync refreshes the source from its server, as a TUF client does
// (root rotation, timestamp, snapshot, targets, delegations), verifying
// everything against the cached state (rollback protection) and `now`
// (freeze protection) before anything is written. The cache is rewritten
// only when something changed, in one atomic step. On error the cache is
// untouched.
//
// An unchanged repository costs one request: when the last probe for a
// new root found none less than RootCheckInterval ago (a time kept in the
// cache, so restarts respect it), timestamp.json is fetched first, and if
// it is byte for byte the trusted one and the data is still fresh, the sync
// stops there. Anything else (a new timestamp, the interval elapsed, no
// probe on record, an error) runs the whole update in the specification's
// order, root first, so that a root rotation is always seen before any
// new metadata is trusted. The fast path never trusts anything new; what
// it trades is how soon a root rotation published alone, with the
// timestamp left as it was, is seen: within RootCheckInterval. A timestamp
// key revoked by such a rotation therefore keeps a client on the data it
// already trusts for at most that interval plus the trusted timestamp's
// expiry (see docs/SECURITY.md).
func (s *TUFSource) Sync(ctx context.Context, now time.Time) (*SyncResult, error) {
	raw, prev, err := s.readBundleRaw()
	if err != nil && !errors.Is(err, ErrNoData) {
		prev = nil // unreadable: moved aside; start again from the pinned root
	}
	// The cached state: verified already when its derived index matches
	// its bytes, otherwise verified now.
	var prevDerived *derivedIndex
	var prevKey string
	if prev != nil {
		prevKey = derivedKey(raw, s.Root)
		if d, derr := readDerived(s.derivedPath(), prevKey); derr == nil {
			prevDerived = d
		} else if _, _, verr := s.verifyBundle(prev, time.Time{}); verr != nil {
			removeDerived(s.derivedPath())
			s.moveAside(verr)
			prev = nil
		}
	}
	pr := s.readProgress()
	fetchTimestamp := func() ([]byte, error) {
		return s.Fetcher.Fetch(ctx, s.URL+"timestamp.json", maxTimestampSize)
	}
	unchanged := func(d *derivedIndex) *SyncResult {
		ix := s.indexOf(d)
		ix.Updated = now.UTC()
		return &SyncResult{Index: ix, Summary: d.Version}
	}
	// The timestamp first, when the root was probed recently (and no
	// refresh stopped half-way since): the same bytes as the trusted
	// timestamp mean nothing changed.
	var early []byte
	if prevDerived != nil && pr.empty() && prev.Timestamp != nil && s.rootCheckedRecently(prevKey, now) {
		if early, err = fetchTimestamp(); err != nil {
			return nil, err
		}
		if bytes.Equal(early, prev.Timestamp) && freshAt(prevDerived.Trust, now) {
			return unchanged(prevDerived), nil
		}
	}
	if prev == nil {
		prev = &TUFBundle{}
	}
	tm, err := trustedmetadata.New(s.Root)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	nb := &TUFBundle{Format: 1, Source: s.Name, URL: s.URL, Verified: now.UTC()}
	for _, r := range prev.Roots {
		if _, err := tm.UpdateRoot(r); err != nil {
			return nil, fmt.Errorf("cached root: %w", err)
		}
		nb.Roots = append(nb.Roots, r)
	}
	// kept is what verifies in this refresh beyond the bundle: written as
	// the progress file if the refresh does not complete.
	kept := &tufProgress{}
	for _, r := range pr.Roots {
		if _, err := tm.UpdateRoot(r); err != nil {
			break
		}
		nb.Roots = append(nb.Roots, r)
		kept.Roots = append(kept.Roots, r)
	}
	res, err := s.refresh(ctx, tm, prev, pr, nb, kept, early, fetchTimestamp, func() bool {
		return prevDerived != nil && pr.empty() && len(nb.Roots) == len(prev.Roots) && bytes.Equal(nb.Timestamp, prev.Timestamp) && freshAt(prevDerived.Trust, now)
	})
	if err != nil {
		return s.keepProgress(prev, kept, err)
	}
	if res == nil { // unchanged (same timestamp, no new root) and still fresh
		s.writeRootCheck(prevKey, now)
		return unchanged(prevDerived), nil
	}
	changed := !sameBundle(prev, nb)
	if !changed {
		nb.Verified = prev.Verified
	}
	d := s.derive(tm, res.del, nb.Verified, prevKey)
	if changed {
		data, err := s.writeBundle(nb)
		if err != nil {
			return nil, err
		}
		d.Key = derivedKey(data, s.Root)
	}
	s.removeProgress()
	if changed || prevDerived == nil {
		// A derived index missing or stale (written by another version)
		// beside an unchanged bundle is written again too: else every
		// refresh would verify the whole bundle again.
		_ = s.writeDerived(d)
	}
	s.writeRootCheck(d.Key, now)
	out := &SyncResult{Changed: changed, Index: s.indexOf(d)}
	out.Index.Updated = now.UTC()
	out.Summary = out.Index.Version
	if len(res.problems) > 0 {
		out.Summary += "; " + strings.Join(res.problems, "; ")
	}
	return out, nil
}

// refreshed is what refresh loaded beyond the top-level metadata.
type refreshed struct {
	del      verify.TUFDelegations
	problems []string
}

// refresh runs the update after the cached roots (TUF 5.3 to 5.6) into tm
// and nb, recording in kept each step that verified beyond prev. It
// returns nil, nil when unchanged reports, after the timestamp, that the
// repository is unchanged and the cached data still fresh.
func (s *TUFSource) refresh(ctx context.Context, tm *trustedmetadata.TrustedMetadata, prev *TUFBundle, pr *tufProgress, nb *TUFBundle, kept *tufProgress, early []byte, fetchTimestamp func() ([]byte, error), unchanged func() bool) (*refreshed, error) {
	// Root rotation: fetch N+1.root.json until the server has no more.
	for i := 0; i < maxRootRotations; i++ {
		v := tm.Root.Signed.Version + 1
		data, err := s.Fetcher.Fetch(ctx, s.URL+fmt.Sprintf("%d.root.json", v), maxRootSize)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateRoot(data); err != nil {
			return nil, fmt.Errorf("root v%d: %w", v, err)
		}
		nb.Roots = append(nb.Roots, data)
		kept.Roots = append(kept.Roots, data) // TUF 5.3.8: a verified root is kept
	}
	tm.RefTime = nb.Verified
	consistent := tm.Root.Signed.ConsistentSnapshot

	// Timestamp: the cached ones first, for rollback protection.
	trusted := prev.Timestamp
	for _, c := range [][]byte{prev.Timestamp, pr.Timestamp} {
		if c == nil {
			continue
		}
		if _, err := tm.UpdateTimestamp(c); err != nil {
			var exp *metadata.ErrExpiredMetadata
			if errors.As(err, &exp) && tm.Timestamp == nil {
				return nil, fmt.Errorf("root: %w", err)
			}
			continue
		}
		trusted = c
	}
	// The timestamp fetched before the root walk serves unless the walk
	// found a new root: it may have been signed before the rotation.
	data := early
	if data == nil || len(nb.Roots) != len(prev.Roots) {
		var err error
		if data, err = fetchTimestamp(); err != nil {
			return nil, err
		}
	}
	nb.Timestamp = data
	if _, err := tm.UpdateTimestamp(data); err != nil {
		var eq *metadata.ErrEqualVersionNumber
		if !errors.As(err, &eq) {
			return nil, fmt.Errorf("timestamp: %w", err)
		}
		nb.Timestamp = trusted
		if tm.Timestamp.Signed.IsExpired(tm.RefTime) {
			return nil, fmt.Errorf("timestamp: %w", &metadata.ErrExpiredMetadata{Msg: "timestamp.json is expired and the server has no newer one"})
		}
	}
	if !bytes.Equal(nb.Timestamp, prev.Timestamp) {
		kept.Timestamp = nb.Timestamp // TUF 5.4.5
	}
	if unchanged() {
		return nil, nil
	}

	// Snapshot: a cached one that is the final one serves.
	snapMeta := tm.Timestamp.Signed.Meta["snapshot.json"]
	if snapMeta == nil {
		return nil, fmt.Errorf("timestamp lists no snapshot.json")
	}
	nb.Snapshot = nil
	for _, c := range [][]byte{prev.Snapshot, pr.Snapshot} {
		if c == nil {
			continue
		}
		if _, err := tm.UpdateSnapshot(c, true); err == nil {
			nb.Snapshot = c
		}
	}
	if nb.Snapshot == nil {
		name := "snapshot.json"
		if consistent {
			name = fmt.Sprintf("%d.snapshot.json", snapMeta.Version)
		}
		data, err := s.Fetcher.Fetch(ctx, s.URL+name, boundFor(snapMeta, maxSnapshotSize))
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateSnapshot(data, false); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		nb.Snapshot = data
	}
	if !bytes.Equal(nb.Snapshot, prev.Snapshot) {
		kept.Snapshot = nb.Snapshot // TUF 5.5.7
	}

	// Targets and delegations: reuse cached roles whose version is current.
	cached := map[string][]byte{}
	for _, d := range prev.Delegations {
		cached[d.Name] = d.Data
	}
	fetch := func(role string) ([]byte, error) {
		meta := tm.Snapshot.Signed.Meta[role+".json"]
		if meta == nil {
			return nil, fmt.Errorf("snapshot lists no %s.json", role)
		}
		name := url.PathEscape(role) + ".json"
		if consistent {
			name = fmt.Sprintf("%d.%s", meta.Version, name)
		}
		return s.Fetcher.Fetch(ctx, s.URL+name, boundFor(meta, maxTargetsSize))
	}
	nb.Targets = prev.Targets
	if prev.Targets == nil || func() error { _, err := tm.UpdateTargets(prev.Targets); return err }() != nil {
		data, err := fetch(metadata.TARGETS)
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateTargets(data); err != nil {
			return nil, fmt.Errorf("targets: %w", err)
		}
		nb.Targets = data
	}
	return s.fetchDelegations(ctx, tm, nb, cached, fetch)
}

// fetchDelegations fetches the delegation graph below the top-level
// targets, each role once, following only delegations whose signatures
// verify (resolution checks each delegation again, on its own path). A
// role that cannot be loaded is recorded with the reason, in nb and in the
// result: resolution denies the targets in its paths.
func (s *TUFSource) fetchDelegations(ctx context.Context, tm *trustedmetadata.TrustedMetadata, nb *TUFBundle, cached map[string][]byte, fetch func(string) ([]byte, error)) (*refreshed, error) {
	res := &refreshed{del: newDelegations()}
	meta := func(role string) *metadata.Metadata[metadata.TargetsType] {
		if role == metadata.TARGETS {
			return tm.Targets[metadata.TARGETS]
		}
		return res.del.Roles[role]
	}
	load := func(role, delegator string) {
		rf := RoleFile{Name: role, Delegator: delegator}
		data := cached[role]
		md, err := checkRole(tm, role, data)
		if data == nil || err != nil {
			if data, err = fetch(role); err == nil {
				md, err = checkRole(tm, role, data)
			}
		}
		if err != nil {
			rf.Error = err.Error()
			res.del.Failed[role] = rf.Error
			res.problems = append(res.problems, fmt.Sprintf("delegated role %s not loaded: %v", role, err))
		} else {
			rf.Data = data
			res.del.Roles[role] = md
		}
		nb.Delegations = append(nb.Delegations, rf)
	}
	queue := []string{metadata.TARGETS}
	loaded := map[string]bool{metadata.TARGETS: true}
	queued := map[string]bool{metadata.TARGETS: true}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		pm := meta(parent)
		del := pm.Signed.Delegations
		if del == nil {
			continue
		}
		var children []string
		if del.SuccinctRoles != nil {
			children = del.SuccinctRoles.GetRoles()
		}
		for _, r := range del.Roles {
			children = append(children, r.Name)
		}
		for _, child := range children {
			if !loaded[child] {
				loaded[child] = true
				if len(loaded) > maxDelegations {
					return nil, fmt.Errorf("more than %d delegated roles", maxDelegations)
				}
				load(child, parent)
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			md := res.del.Roles[child]
			if queued[child] || md == nil || pm.VerifyDelegate(child, md) != nil {
				continue
			}
			queued[child] = true
			queue = append(queue, child)
		}
	}
	return res, nil
}

// tufProgress is what verified during a refresh that did not complete,
// beyond the bundle: kept as the specification keeps each step (a new
// root, 5.3.8; the timestamp, 5.4.5; the snapshot, 5.5.7), so that the
// next refresh starts from it: a rotated root stays trusted, timestamp and
// snapshot versions never roll back. Decisions do not use it, except that
// the bundle must still verify under its newest root.
type tufProgress struct {
	Roots     [][]byte `json:"roots,omitempty"`
	Timestamp []byte   `json:"timestamp,omitempty"`
	Snapshot  []byte   `json:"snapshot,omitempty"`
}

func (p *tufProgress) empty() bool {
	return len(p.Roots) == 0 && p.Timestamp == nil && p.Snapshot == nil
}

func (s *TUFSource) progressPath() string { return s.bundlePath() + ".progress" }

// readProgress reads the progress file; missing or unreadable, it is empty.
func (s *TUFSource) readProgress() *tufProgress {
	p := &tufProgress{}
	b, err := readFileLimit(s.progressPath(), maxRootRotations*maxRootSize+maxTimestampSize+maxSnapshotSize)
	if err != nil || json.Unmarshal(b, p) != nil {
		return &tufProgress{}
	}
	return p
}

func (s *TUFSource) removeProgress() {
	if err := os.Remove(s.progressPath()); err == nil {
		syncDir(filepath.Dir(s.progressPath()))
	}
}

// keepProgress ends a refresh that failed with err: it writes what
// verified (kept) for the next refresh, and, when that includes a newer
// root, checks the last complete bundle under it. A bundle that no longer
// verifies (its keys revoked) is replaced, for decisions, by an index
// that has only the error.
func (s *TUFSource) keepProgress(prev *TUFBundle, kept *tufProgress, err error) (*SyncResult, error) {
	if kept.empty() {
		return nil, err
	}
	if b, merr := json.Marshal(kept); merr == nil && os.MkdirAll(s.Dir, 0o700) == nil {
		RemoveStaleTemps(s.progressPath())
		_ = WriteFileAtomic(s.progressPath(), b, 0o600)
	}
	if len(kept.Roots) == 0 || prev.Timestamp == nil {
		return nil, err
	}
	ix, verr := s.underNewerRoots(prev, kept.Roots)
	if verr != nil {
		ix = &verify.SourceIndex{Name: s.Name, Kind: "tuf", Err: verr}
	}
	return &SyncResult{Index: ix, Summary: "refresh incomplete; kept what verified"}, err
}

// rootCheck records the last root walk that ran to its end: the server
// had no root newer than those of the bundle whose derivedKey is Key.
type rootCheck struct {
	Key     string    `json:"key"`
	URL     string    `json:"url"`
	Checked time.Time `json:"checked"`
}

func (s *TUFSource) rootCheckPath() string { return s.bundlePath() + ".rootcheck" }

// rootCheckedRecently reports whether the root walk found no new root for
// the bundle with the given key, on this URL, less than RootCheckInterval
// before now. A clock that went back counts as elapsed.
func (s *TUFSource) rootCheckedRecently(key string, now time.Time) bool {
	interval := s.RootCheckInterval
	if interval == 0 {
		interval = DefaultRootCheckInterval
	}
	if interval < 0 {
		return false
	}
	b, err := readFileLimit(s.rootCheckPath(), 4<<10)
	if err != nil {
		return false
	}
	var rc rootCheck
	if json.Unmarshal(b, &rc) != nil || rc.Key != key || rc.URL != s.URL || rc.Checked.IsZero() {
		return false
	}
	age := now.Sub(rc.Checked)
	return age >= 0 && age < interval
}

// writeRootCheck records a complete root walk at now. It is best effort:
// without the record, the next sync probes for a new root again.
func (s *TUFSource) writeRootCheck(key string, now time.Time) {
	b, err := json.Marshal(rootCheck{Key: key, URL: s.URL, Checked: now.UTC()})
	if err != nil {
		return
	}
	RemoveStaleTemps(s.rootCheckPath())
	_ = WriteFileAtomic(s.rootCheckPath(), b, 0o600)
}

// freshAt reports whether no repository's data has expired at now.
func freshAt(t *verify.Trust, now time.Time) bool {
	for i := 0; i < t.Len(); i++ {
		r := t.RepoAt(i)
		if now.After(r.Expires()) || !r.FreshUntil().IsZero() && now.After(r.FreshUntil()) {
			return false
		}
	}
	return true
}

func boundFor(meta *metadata.MetaFiles, def int64) int64 {
	if meta != nil && meta.Length > 0 {
		return meta.Length
	}
	return def
}

func sameBundle(a, b *TUFBundle) bool {
	if len(a.Roots) != len(b.Roots) || len(a.Delegations) != len(b.Delegations) {
		return false
	}
	for i := range a.Roots {
		if !bytes.Equal(a.Roots[i], b.Roots[i]) {
			return false
		}
	}
	for i := range a.Delegations {
		if a.Delegations[i].Name != b.Delegations[i].Name || a.Delegations[i].Error != b.Delegations[i].Error || !bytes.Equal(a.Delegations[i].Data, b.Delegations[i].Data) {
			return false
		}
	}
	return bytes.Equal(a.Timestamp, b.Timestamp) && bytes.Equal(a.Snapshot, b.Snapshot) && bytes.Equal(a.Targets, b.Targets)
}

func (s *TUFSource) writeBundle(b *TUFBundle) ([]byte, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	RemoveStaleTemps(s.bundlePath())
	return data, WriteFileAtomic(s.bundlePath(), data, 0o600)
}
