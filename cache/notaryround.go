package cache

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Bounds on what a Notary source keeps in sync. A Notary server cannot list
// its repositories, so a round refreshes those the policy names, those
// cached, those of containerd's images and those seen at pulls; anyone who
// can ask for a pull can name the last kind, so it lives in memory only,
// for a while, up to a number, and after every other kind.
const (
	// DefaultNotaryPulledTTL is how long a repository seen at a pull, for
	// which the server had no trust data, is kept in sync after the last
	// pull that named it: long enough to see the signature of an image a
	// deployment retries, short enough that names pulled once are
	// forgotten. A later pull fetches it again at once in any case.
	DefaultNotaryPulledTTL = time.Hour
	// DefaultNotaryPulledCap is how many such repositories are kept; a new
	// one displaces the one closest to expiry. It bounds what names sent by
	// pulls cost: one request each a round, after every other repository.
	DefaultNotaryPulledCap = 1000
	// DefaultNotaryRoundMax bounds the repositories one round fetches (an
	// unchanged repository costs one small request, eight run at a time,
	// so a round of this many takes seconds against the 5-minute default
	// refresh); the others are first in the next round.
	DefaultNotaryRoundMax = 1000
)

// Priority of a repository in a round, most important first.
const (
	classLiteral = iota // named literally in the policy
	classCached         // cached with trust data
	classStored         // of an image in containerd's store (Want)
	classPulled         // seen at a pull, no trust data (in memory, for a while)
)

func (s *NotarySource) pulledTTL() time.Duration {
	if s.PulledTTL > 0 {
		return s.PulledTTL
	}
	return DefaultNotaryPulledTTL
}

func (s *NotarySource) pulledCap() int {
	if s.PulledCap > 0 {
		return s.PulledCap
	}
	return DefaultNotaryPulledCap
}

func (s *NotarySource) roundMax() int {
	if s.RoundMax > 0 {
		return s.RoundMax
	}
	return DefaultNotaryRoundMax
}

// isLiteral reports whether the policy names gun without wildcards.
func (s *NotarySource) isLiteral(gun string) bool {
	for _, p := range s.Repositories {
		if p.IsLiteral() && p.Normalized() == gun {
			return true
		}
	}
	return false
}

// cachedGUNs lists the repositories cached on disk that the source covers,
// without the unsigned markers Load found (they hold no trust data).
func (s *NotarySource) cachedGUNs() []string {
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "notary"))
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if gun, err := url.PathUnescape(name); err == nil && s.Covers(gun) && !s.markers[gun] {
			out = append(out, gun)
		}
	}
	return out
}

// gunsToSync returns the repositories one round refreshes at now, at most
// roundMax, and how many wait for a later round. Repositories named
// literally in the policy come first, then those cached with trust data,
// then those of containerd's images, then those seen at pulls (the expired
// ones forgotten); within each kind the least recently refreshed first, so
// that every repository gets its turn and a name that sorts first gains
// nothing.
func (s *NotarySource) gunsToSync(now time.Time) ([]string, int) {
	class := map[string]int{}
	add := func(gun string, c int) {
		if old, ok := class[gun]; !ok || c < old {
			class[gun] = c
		}
	}
	for _, p := range s.Repositories {
		if p.IsLiteral() {
			add(p.Normalized(), classLiteral)
		}
	}
	for _, gun := range s.cachedGUNs() {
		add(gun, classCached)
	}
	type candidate struct {
		gun   string
		class int
		last  uint64
	}
	s.mu.Lock()
	for gun := range s.wanted {
		add(gun, classStored)
	}
	s.expirePulled(now)
	for gun := range s.pulled {
		add(gun, classPulled)
	}
	for gun := range s.lastRound {
		if _, ok := class[gun]; !ok {
			delete(s.lastRound, gun)
		}
	}
	cands := make([]candidate, 0, len(class))
	for gun, c := range class {
		cands = append(cands, candidate{gun, c, s.lastRound[gun]})
	}
	s.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.class != b.class {
			return a.class < b.class
		}
		if a.last != b.last {
			return a.last < b.last
		}
		return a.gun < b.gun
	})
	n := min(len(cands), s.roundMax())
	out := make([]string, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastRound == nil {
		s.lastRound = map[string]uint64{}
	}
	s.round++
	for i := range n {
		out[i] = cands[i].gun
		s.lastRound[out[i]] = s.round
	}
	return out, len(cands) - n
}

// SyncPulled fetches now the trust data of a repository seen at a pull (a
// pull is online). A repository left without trust data — the server has
// none for it, or the fetch failed — is kept in sync in memory only, for
// PulledTTL after the last pull that named it and at most PulledCap of them
// (a new one displaces the one closest to expiry): nothing is written to
// disk for it. A repository with trust data is cached and kept in sync as
// every cached one is.
func (s *NotarySource) SyncPulled(ctx context.Context, gun string, now time.Time) error {
	_, err := s.SyncRepo(ctx, gun, now)
	s.trackPulled(gun, now)
	return err
}

func (s *NotarySource) trackPulled(gun string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos[gun] != nil || s.wanted[gun] || s.isLiteral(gun) {
		delete(s.pulled, gun) // kept in sync anyway
		return
	}
	if s.pulled == nil {
		s.pulled = map[string]time.Time{}
	}
	if _, ok := s.pulled[gun]; !ok {
		s.expirePulled(now)
		if len(s.pulled) >= s.pulledCap() {
			victim, first := "", time.Time{}
			for g, exp := range s.pulled {
				if victim == "" || exp.Before(first) || (exp.Equal(first) && g < victim) {
					victim, first = g, exp
				}
			}
			delete(s.pulled, victim)
		}
	}
	s.pulled[gun] = now.Add(s.pulledTTL())
}

// expirePulled forgets the repositories seen at pulls whose time is up at
// now. The caller holds s.mu.
func (s *NotarySource) expirePulled(now time.Time) {
	for gun, exp := range s.pulled {
		if !now.Before(exp) {
			delete(s.pulled, gun)
		}
	}
}

// PullDiscovered returns how many repositories seen at pulls, without trust
// data, the source keeps in sync at now.
func (s *NotarySource) PullDiscovered(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expirePulled(now)
	return len(s.pulled)
}

// dropMarkers removes the "unsigned" markers Load found. Earlier versions
// wrote one for each repository the server had no trust data for — any
// name a pull carried — and refreshed every one of them each round, for
// ever. A marker holds no trust data, so nothing is lost: a repository of
// an image in containerd's store is wanted again each round, and a pull
// fetches its repository again. Sync calls it under the cache lock.
func (s *NotarySource) dropMarkers() {
	s.mu.Lock()
	guns := make([]string, 0, len(s.markers))
	for gun := range s.markers {
		guns = append(guns, gun)
	}
	s.mu.Unlock()
	if len(guns) == 0 {
		return
	}
	for _, gun := range guns {
		unlock := s.lockGUN(gun)
		err := s.dropMarker(gun)
		unlock()
		if err == nil {
			s.mu.Lock()
			delete(s.markers, gun)
			s.mu.Unlock()
		}
	}
	syncDir(filepath.Join(s.Dir, "notary"))
}

// dropMarker removes gun's bundle file if it is (still) an unsigned marker.
// The caller holds gun's lock and syncs the directory.
func (s *NotarySource) dropMarker(gun string) error {
	b, err := s.readBundle(gun)
	if err != nil {
		if _, serr := os.Stat(s.bundlePath(gun)); errors.Is(serr, os.ErrNotExist) {
			return nil // gone, or unreadable and moved aside
		}
		return err
	}
	if !b.Unsigned {
		return nil
	}
	if err := os.Remove(s.bundlePath(gun)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// lockGUN takes gun's refresh lock and returns its release: in this
// process a mutex (repoMutexes: so one goroutine per GUN waits on the
// file), then the bundle's file lock (lockRepo), which writers in other
// processes take too. The file lock is only ever released by unlock:
// should taking it fail, the refresh goes on under the mutex alone, as
// before, and says nothing (a cache directory that cannot hold a lock file
// fails its writes too).
func (s *NotarySource) lockGUN(gun string) (unlock func()) {
	unlockMutex := s.locks.lock(gun)
	fl, _ := lockRepo(s.Dir, gun)
	return func() {
		fl.Unlock()
		unlockMutex()
	}
}
