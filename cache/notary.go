package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

// Size bounds for Notary downloads before the signed lengths are known.
const (
	maxNotaryRootSize      = 512 << 10
	maxNotaryTimestampSize = 64 << 10
	notarySyncConcurrency  = 8
	maxNotaryRepos         = 100000
)

// NotaryBundle is one GUN's verified Notary metadata as stored in the cache.
type NotaryBundle struct {
	Format      int               `json:"format"`
	GUN         string            `json:"gun"`
	Verified    time.Time         `json:"verified"`
	Root        []byte            `json:"root"`
	Timestamp   []byte            `json:"timestamp"`
	Snapshot    []byte            `json:"snapshot"`
	Targets     []byte            `json:"targets"`
	Delegations map[string][]byte `json:"delegations,omitempty"`
	State       notary.Trusted    `json:"state"`
	// Unsigned marks a record, written by earlier versions only, that the
	// server had no trust data for the GUN; it is removed when found.
	Unsigned bool `json:"unsigned,omitempty"`
}

// NotaryPin is a trust pin of a Notary source with its CA loaded.
type NotaryPin struct {
	Repositories []policy.Pattern
	RootKeys     []string
	CA           []byte
}

// NotarySource is a Notary v1 server (Docker Content Trust). A Notary
// server cannot list its repositories, so the source keeps in sync the
// repositories named literally in the policy, every repository cached with
// trust data, the ones added with Want (images in containerd's store), and,
// in memory for a while, those seen at a pull without trust data
// (SyncPulled); a round fetches at most RoundMax of them, in that order of
// priority. Methods are safe for concurrent use.
type NotarySource struct {
	SourceName   string
	URL          string // server base URL, no trailing slash
	Dir          string
	Fetcher      Fetcher
	Repositories []policy.Pattern
	Pins         []NotaryPin
	TOFU         bool
	// PulledTTL and PulledCap bound the repositories seen at pulls without
	// trust data that are kept in sync; RoundMax bounds the repositories a
	// round fetches. Zero means DefaultNotaryPulledTTL,
	// DefaultNotaryPulledCap, DefaultNotaryRoundMax.
	PulledTTL time.Duration
	PulledCap int
	RoundMax  int

	mu        sync.Mutex
	repos     map[string]*verify.Trust
	keys      map[string]*notary.Keys
	wanted    map[string]bool
	pulled    map[string]time.Time // seen at a pull, no trust data -> forgotten at
	markers   map[string]bool      // unsigned markers of earlier versions, found by Load
	lastRound map[string]uint64    // round in which a repository was last refreshed
	round     uint64
	locks     repoMutexes // one refresh of a GUN at a time
}

// Name implements Source.
func (s *NotarySource) Name() string { return s.SourceName }

// Kind implements Source.
func (s *NotarySource) Kind() string { return policy.KindNotary }

func (s *NotarySource) bundlePath(gun string) string {
	return filepath.Join(s.Dir, "notary", url.PathEscape(gun)+".json")
}

// Covers reports whether the source has trust data for repo per its
// `repositories` patterns.
func (s *NotarySource) Covers(repo string) bool { return covers(s.Repositories, repo) }

// Want adds repositories to keep in sync (those the source covers).
func (s *NotarySource) Want(repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wanted = addWanted(s.wanted, s.Repositories, repos, maxNotaryRepos)
}

// covers reports whether one of a source's repositories patterns matches
// repo.
func covers(patterns []policy.Pattern, repo string) bool {
	return slices.ContainsFunc(patterns, func(p policy.Pattern) bool { return p.Match(repo) })
}

// addWanted adds to wanted (made if nil) the repos that patterns cover,
// while it holds fewer than max, and returns it: the repositories a
// per-repository source keeps in sync.
func addWanted(wanted map[string]bool, patterns []policy.Pattern, repos []string, max int) map[string]bool {
	if wanted == nil {
		wanted = map[string]bool{}
	}
	for _, r := range repos {
		if covers(patterns, r) && len(wanted) < max {
			wanted[r] = true
		}
	}
	return wanted
}

func (s *NotarySource) pinFor(gun string) notary.Pin {
	for _, p := range s.Pins {
		for _, pat := range p.Repositories {
			if pat.Match(gun) {
				return notary.Pin{RootKeys: p.RootKeys, CA: p.CA}
			}
		}
	}
	return notary.Pin{TOFU: s.TOFU}
}

func (s *NotarySource) opts(gun string, now time.Time) notary.Options {
	return notary.Options{GUN: gun, Now: now, Pin: s.pinFor(gun), Source: s.SourceName, RepoName: gun}
}

// Load verifies every cached repository offline. A repository whose cached
// data fails verification is moved aside and reported; the others load.
// An "unsigned" marker of an earlier version (no trust data) is not loaded
// and not kept in sync: the next Sync removes it (dropMarkers).
func (s *NotarySource) Load() (*verify.SourceIndex, error) {
	s.mu.Lock()
	s.repos, s.keys, s.markers = map[string]*verify.Trust{}, map[string]*notary.Keys{}, map[string]bool{}
	s.mu.Unlock()
	var errs []error
	entries, err := os.ReadDir(filepath.Join(s.Dir, "notary"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		gun, err := url.PathUnescape(strings.TrimSuffix(name, ".json"))
		if err != nil {
			continue
		}
		// The derived index, when it matches the bundle's bytes and the
		// pins, is the verified index: the bundle need not be parsed.
		if key, err := s.derivedKeyOfFile(gun); err == nil && s.loadDerived(gun, key) {
			continue
		}
		raw, b, err := s.readBundleRaw(gun)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.Unsigned {
			s.mu.Lock()
			s.markers[gun] = true
			s.mu.Unlock()
			continue
		}
		if err := s.loadVerified(gun, raw, b); err != nil {
			errs = append(errs, fmt.Errorf("cached trust data of %s failed verification (%s): %w", gun, s.moveAside(gun), err))
		}
	}
	return s.index(), errors.Join(errs...)
}

// Index returns the source's current index (RepositorySource).
func (s *NotarySource) Index() *verify.SourceIndex { return s.index() }

func (s *NotarySource) index() *verify.SourceIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.repos))
	for k := range s.repos {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]*verify.Trust, len(names))
	for i, n := range names {
		parts[i] = s.repos[n]
	}
	si := verify.NewSourceIndexOf(s.SourceName, policy.KindNotary, parts...)
	si.Version, si.Updated = fmt.Sprintf("%d repositories", si.NumRepos()), time.Now()
	return si
}

func (s *NotarySource) readBundle(gun string) (*NotaryBundle, error) {
	_, b, err := s.readBundleRaw(gun)
	return b, err
}

func (s *NotarySource) readBundleRaw(gun string) ([]byte, *NotaryBundle, error) {
	data, err := readFileLimit(s.bundlePath(gun), maxBundleFileBytes)
	if err != nil {
		return nil, nil, err
	}
	var b NotaryBundle
	if err := json.Unmarshal(data, &b); err != nil || b.Format != 1 || b.GUN != gun {
		if err == nil {
			err = fmt.Errorf("format %d, GUN %q", b.Format, b.GUN)
		}
		return nil, nil, fmt.Errorf("cached trust data of %s is unreadable (%s): %w", gun, s.moveAside(gun), err)
	}
	return data, &b, nil
}

func (s *NotarySource) derivedPath(gun string) string { return s.bundlePath(gun) + ".index" }

// derivedKey binds a GUN's derived index to its bundle bytes and to what
// the policy pins for it.
func (s *NotarySource) derivedKey(gun string, raw []byte) string {
	return derivedKey(raw, s.pinAnchor(gun))
}

// pinAnchor is what the policy pins for gun, as a derived index's key
// binds it.
func (s *NotarySource) pinAnchor(gun string) []byte {
	pin, _ := json.Marshal(s.pinFor(gun))
	return pin
}

// loadVerified installs a cached GUN: from its derived index when that
// matches the bundle's bytes and pins, otherwise by verifying the bundle
// in full (and deriving the index for the next start).
func (s *NotarySource) loadVerified(gun string, raw []byte, b *NotaryBundle) error {
	if b.Unsigned {
		return nil
	}
	key := s.derivedKey(gun, raw)
	if s.loadDerived(gun, key) {
		return nil
	}
	res, err := s.verifyBundle(b)
	if err != nil {
		removeDerived(s.derivedPath(gun))
		return err
	}
	s.install(gun, res)
	s.saveDerived(gun, key)
	return nil
}

// loadDerived installs gun from its derived index if that index has the
// given key (and is whole); it reports whether it did.
func (s *NotarySource) loadDerived(gun, key string) bool {
	d, err := readDerived(s.derivedPath(gun), key)
	if err != nil || d.Trust.Len() != 1 || d.Trust.RepoAt(0).Name() != gun {
		return false
	}
	var k notary.Keys
	if json.Unmarshal(d.Extra, &k) != nil {
		return false
	}
	s.installDerived(gun, d.Trust, &k)
	return true
}

// derivedKeyOfFile is derivedKey of gun's bundle file, hashed as a stream.
func (s *NotarySource) derivedKeyOfFile(gun string) (string, error) {
	return derivedKeyOfFile(s.bundlePath(gun), s.pinAnchor(gun))
}

// saveDerived writes the installed index of gun as its derived index.
func (s *NotarySource) saveDerived(gun, key string) {
	s.mu.Lock()
	r, k := s.repos[gun], s.keys[gun]
	s.mu.Unlock()
	if r == nil || k == nil {
		return
	}
	extra, err := json.Marshal(k)
	if err != nil {
		return
	}
	_ = writeDerived(s.derivedPath(gun), &derivedIndex{Key: key, Version: gun, Trust: r, Extra: extra})
}

// verifyBundle re-verifies a stored bundle at the time it was verified
// online: signatures, thresholds, versions and pins. Expiry is judged by
// the decision at its own time. An unsigned marker yields nil.
func (s *NotarySource) verifyBundle(b *NotaryBundle) (*notary.Result, error) {
	if b.Unsigned {
		return nil, nil
	}
	state := b.State
	return notary.Verify(notary.Files{Root: b.Root, Timestamp: b.Timestamp, Snapshot: b.Snapshot, Targets: b.Targets, Delegations: b.Delegations}, &state, s.opts(b.GUN, b.Verified))
}

// Keys returns the keys of a cached repository (root certificates,
// repository keys, delegations): what `docker trust inspect` shows.
func (s *NotarySource) Keys(gun string) *notary.Keys {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[gun]
}

func (s *NotarySource) install(gun string, res *notary.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos == nil {
		s.repos, s.keys = map[string]*verify.Trust{}, map[string]*notary.Keys{}
	}
	k := res.Keys
	s.repos[gun] = verify.NewTrust(map[string]*verify.Repo{gun: splitExpiry(res.Repo, &k)})
	s.keys[gun] = &k
	delete(s.pulled, gun)
}

func (s *NotarySource) installDerived(gun string, r *verify.Trust, k *notary.Keys) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos == nil {
		s.repos, s.keys = map[string]*verify.Trust{}, map[string]*notary.Keys{}
	}
	s.repos[gun], s.keys[gun] = r, k
	delete(s.pulled, gun)
}

// splitExpiry separates a Notary repository's freshness (timestamp and
// snapshot expiry, which offline grace may extend) from the expiry of the
// rest (root and its certificates, targets, delegations), which it never
// extends.
func splitExpiry(r *verify.Repo, k *notary.Keys) *verify.Repo {
	c := *r
	c.FreshUntil, c.FreshRole = k.Timestamp.Expires, "timestamp"
	if k.Snapshot.Expires.Before(c.FreshUntil) {
		c.FreshUntil, c.FreshRole = k.Snapshot.Expires, "snapshot"
	}
	if c.ExpiresRole != "timestamp" && c.ExpiresRole != "snapshot" {
		return &c // already the earliest of the others
	}
	c.Expires, c.ExpiresRole = k.Root.Expires, "root"
	for _, cert := range k.RootCerts {
		if cert.Signed && !cert.NotAfter.IsZero() && cert.NotAfter.Before(c.Expires) {
			c.Expires, c.ExpiresRole = cert.NotAfter, "root certificate "+cert.KeyID
		}
	}
	if k.Targets.Expires.Before(c.Expires) {
		c.Expires, c.ExpiresRole = k.Targets.Expires, "targets"
	}
	for _, d := range k.Delegations {
		if d.Ignored == "" && !d.Expires.IsZero() && d.Expires.Before(c.Expires) {
			c.Expires, c.ExpiresRole = d.Expires, d.Role
		}
	}
	return &c
}

func (s *NotarySource) moveAside(gun string) string { return moveAside(s.bundlePath(gun)) }

// Sync refreshes the repositories to keep in sync, a few at a time and at
// most RoundMax of them (gunsToSync says which come first; the others come
// first in the next round). A repository that fails keeps its cached
// data; the error names it.
func (s *NotarySource) Sync(ctx context.Context, now time.Time) (*SyncResult, error) {
	// Temporary files of interrupted writes, of every repository in one
	// pass over the directory (per write, that pass would make a round
	// over N repositories cost N² directory entries), before any write of
	// this round starts; rounds run under the cache lock.
	RemoveStaleTempsIn(filepath.Join(s.Dir, "notary"))
	s.dropMarkers()
	guns, waiting := s.gunsToSync(now)
	type outcome struct {
		gun     string
		changed bool
		err     error
	}
	out := make([]outcome, len(guns))
	sem := make(chan struct{}, notarySyncConcurrency)
	var wg sync.WaitGroup
	for i, gun := range guns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, gun string) {
			defer wg.Done()
			defer func() { <-sem }()
			changed, err := s.SyncRepo(ctx, gun, now)
			out[i] = outcome{gun, changed, err}
		}(i, gun)
	}
	wg.Wait()
	res := &SyncResult{}
	var errs []error
	updated, failed := 0, 0
	for _, o := range out {
		if o.err != nil {
			failed++
			errs = append(errs, fmt.Errorf("%s: %w", o.gun, o.err))
			continue
		}
		if o.changed {
			updated++
			res.Changed = true
		}
	}
	res.Index = s.index()
	res.Summary = fmt.Sprintf("%d repositories: %d updated, %d unchanged, %d failed", len(guns), updated, len(guns)-updated-failed, failed)
	if waiting > 0 {
		res.Summary += fmt.Sprintf("; %d more wait for the next round (at most %d a round)", waiting, s.roundMax())
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("%s: %w", res.Summary, errors.Join(errs...))
	}
	return res, nil
}

// SyncRepo refreshes one repository (GUN) from the server as Notary's
// client does: timestamp first (an unchanged repository costs one
// request), then snapshot, a new root only when the snapshot lists one,
// then the targets roles whose content changed. Everything is verified
// (pins, rotation, thresholds, versions against the cached state, expiry
// at now) before the cache is written, atomically. It reports whether the
// cached data changed.
func (s *NotarySource) SyncRepo(ctx context.Context, gun string, now time.Time) (bool, error) {
	defer s.lockGUN(gun)()
	raw, prev, err := s.readBundleRaw(gun)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		prev = nil // unreadable: moved aside; start afresh
	}
	if prev != nil && prev.Unsigned {
		// An earlier version's marker: no trust data, not kept (dropMarkers).
		if err := os.Remove(s.bundlePath(gun)); err == nil {
			syncDir(filepath.Dir(s.bundlePath(gun)))
		}
		prev = nil
	}
	if prev != nil {
		if verr := s.loadVerified(gun, raw, prev); verr != nil {
			s.moveAside(gun)
			prev = nil
		}
	}
	base := s.URL + "/v2/" + gun + "/_trust/tuf/"
	o := s.opts(gun, now)
	var prevState *notary.Trusted
	if prev != nil {
		st := prev.State
		prevState = &st
	}

	tsBytes, err := s.Fetcher.Fetch(ctx, base+"timestamp.json", maxNotaryTimestampSize)
	if errors.Is(err, ErrNotFound) {
		if prevState != nil {
			return false, fmt.Errorf("the server no longer has trust data for %s (keeping the cached data)", gun)
		}
		s.forget(gun)
		return false, nil // nothing is written: see SyncPulled
	}
	if err != nil {
		return false, err
	}
	if prev != nil && string(prev.Timestamp) == string(tsBytes) {
		// Unchanged: still check the timestamp is not expired (freeze).
		root, err := notary.VerifyRoot(prev.Root, prevState, o)
		if err != nil {
			return false, err
		}
		if _, err := root.VerifyTimestamp(tsBytes, prevState); err != nil {
			return false, err
		}
		return false, nil
	}

	// The root to verify the timestamp with: the cached one, or the
	// server's on first use.
	rootBytes := []byte(nil)
	if prevState != nil {
		rootBytes = prev.Root
	} else if rootBytes, err = s.Fetcher.Fetch(ctx, base+"root.json", maxNotaryRootSize); err != nil {
		return false, err
	}
	root, err := notary.VerifyRoot(rootBytes, prevState, o)
	if err != nil {
		return false, err
	}
	ts, err := root.VerifyTimestamp(tsBytes, prevState)
	if err != nil && prevState != nil && (errors.Is(err, notary.ErrBadSignature) || errors.Is(err, notary.ErrThreshold)) {
		// The timestamp key may have been rotated: as Notary's client does,
		// fetch the current root, verify the rotation against the trusted
		// root, and try again with it.
		nb, ferr := s.Fetcher.Fetch(ctx, base+"root.json", maxNotaryRootSize)
		if ferr != nil {
			return false, fmt.Errorf("%w (and fetching a new root failed: %v)", err, ferr)
		}
		newRoot, walked, rerr := s.rotateRoot(ctx, base, nb, prevState, o)
		if rerr != nil {
			return false, fmt.Errorf("%w (and the server's root does not verify: %v)", err, rerr)
		}
		root, rootBytes, prevState = newRoot, nb, walked
		ts, err = root.VerifyTimestamp(tsBytes, prevState)
	}
	if err != nil {
		return false, err
	}
	snapMeta := ts.SnapshotMeta()
	snapBytes, err := s.Fetcher.Fetch(ctx, base+"snapshot.json", boundLength(snapMeta.Length))
	if err != nil {
		return false, err
	}
	snap, err := root.VerifySnapshot(snapBytes, ts, prevState)
	if err != nil {
		return false, err
	}
	// A new root is listed: fetch it and verify the rotation.
	// (Notary checks root.json against the snapshot by hash only.)
	if rm, ok := snap.Meta("root"); ok && !hashesMatch(rm, rootBytes) {
		nb, err := s.Fetcher.Fetch(ctx, base+"root.json", max(rm.Length, maxNotaryRootSize))
		if err != nil {
			return false, err
		}
		if !hashesMatch(rm, nb) {
			return false, fmt.Errorf("root.json from the server does not match the snapshot's hashes")
		}
		if prevState != nil {
			if _, walked, err := s.rotateRoot(ctx, base, nb, prevState, o); err == nil {
				prevState = walked
			}
		}
		rootBytes = nb
	}
	files := notary.Files{Root: rootBytes, Timestamp: tsBytes, Snapshot: snapBytes, Delegations: map[string][]byte{}}
	for _, role := range snap.Roles() {
		m, _ := snap.Meta(role)
		var cached []byte
		if prev != nil {
			if role == "targets" {
				cached = prev.Targets
			} else {
				cached = prev.Delegations[role]
			}
		}
		data := cached
		if cached == nil || m.Check(cached) != nil {
			if data, err = s.Fetcher.Fetch(ctx, base+role+".json", boundLength(m.Length)); err != nil {
				if errors.Is(err, ErrNotFound) && role != "targets" {
					continue // Verify decides whether a missing delegation is fatal
				}
				return false, fmt.Errorf("%s: %w", role, err)
			}
		}
		if role == "targets" {
			files.Targets = data
		} else {
			files.Delegations[role] = data
		}
	}
	res, err := notary.Verify(files, prevState, o)
	if err != nil {
		return false, err
	}
	nb := &NotaryBundle{Format: 1, GUN: gun, Verified: now.UTC(), Root: files.Root, Timestamp: files.Timestamp, Snapshot: files.Snapshot, Targets: files.Targets, Delegations: files.Delegations, State: res.State}
	data, err := s.writeBundle(nb)
	if err != nil {
		return false, err
	}
	s.install(gun, res)
	s.saveDerived(gun, s.derivedKey(gun, data))
	return true, nil
}

// rotateRoot verifies a new root against the trusted one. When the new
// root is more than one version ahead and not signed by the trusted root's
// keys (several rotations happened), it walks the intermediate versions
// the server keeps (<version>.root.json), each signed by its predecessor.
// It returns the verified root and the trusted state to verify the rest
// with (its root replaced by the new root's predecessor).
func (s *NotarySource) rotateRoot(ctx context.Context, base string, nb []byte, prev *notary.Trusted, o notary.Options) (*notary.Root, *notary.Trusted, error) {
	r, err := notary.VerifyRoot(nb, prev, o)
	if err == nil {
		return r, prev, nil
	}
	from, to := rootVersion(prev.Root), rootVersion(nb)
	if from <= 0 || to <= from+1 || to-from > maxRootRotations {
		return nil, nil, err
	}
	cur := *prev
	for v := from + 1; v < to; v++ {
		b, ferr := s.Fetcher.Fetch(ctx, fmt.Sprintf("%s%d.root.json", base, v), maxNotaryRootSize)
		if ferr != nil {
			return nil, nil, fmt.Errorf("%w (walking root versions: %v)", err, ferr)
		}
		if _, verr := notary.VerifyRoot(b, &cur, o); verr != nil {
			return nil, nil, fmt.Errorf("root version %d: %w", v, verr)
		}
		cur.Root = b
	}
	r, err = notary.VerifyRoot(nb, &cur, o)
	if err != nil {
		return nil, nil, err
	}
	return r, &cur, nil
}

// rootVersion reads the version of a root.json without verifying it.
func rootVersion(b []byte) int {
	var r struct {
		Signed struct {
			Version int `json:"version"`
		} `json:"signed"`
	}
	if json.Unmarshal(b, &r) != nil {
		return 0
	}
	return r.Signed.Version
}

// hashesMatch checks b against the SHA-256 and SHA-512 hashes of m, at
// least one of which must be present.
func hashesMatch(m notary.Meta, b []byte) bool {
	n := 0
	for alg, want := range m.Hashes {
		var got []byte
		switch alg {
		case "sha256":
			h := sha256.Sum256(b)
			got = h[:]
		case "sha512":
			h := sha512.Sum512(b)
			got = h[:]
		default:
			continue
		}
		if !bytes.Equal(got, want) {
			return false
		}
		n++
	}
	return n > 0
}

func boundLength(n int64) int64 {
	if n <= 0 || n > notary.MaxFileSize {
		return notary.MaxFileSize
	}
	return n
}

// forget drops gun's trust data from memory: the server has none for it.
func (s *NotarySource) forget(gun string) {
	s.mu.Lock()
	delete(s.repos, gun)
	delete(s.keys, gun)
	s.mu.Unlock()
}

func (s *NotarySource) writeBundle(b *NotaryBundle) ([]byte, error) {
	p := s.bundlePath(b.GUN)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return data, WriteFileAtomic(p, data, 0o600)
}

var (
	_ RepositorySource = (*NotarySource)(nil)
	_ KeysSource       = (*NotarySource)(nil)
	_ Source           = (*tufSource)(nil)
)
