package cache

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// lockProbe is a Fetcher that, on every fetch, tries to take the file lock
// of the repository being fetched as another process would (a separate
// open, without waiting), and records whether it was free.
type lockProbe struct {
	Fetcher
	dir, repo string
	free      []bool
}

func (p *lockProbe) Fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	l, err := lockFile(repoLockPath(p.dir, p.repo), syscall.LOCK_NB)
	p.free = append(p.free, err == nil)
	if err == nil {
		l.Unlock()
	} else if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, err
	}
	return p.Fetcher.Fetch(ctx, url, limit)
}

// TestNotaryWritesHoldTheRepositoryLock: every write path of a Notary
// bundle — the fetch at a pull (which does not take the store's lock, so
// as not to wait for a sync round) and `cache import` — holds the
// repository's file lock from reading the bundle it replaces to renaming
// the new one, so that a daemon and a `trustd sync` or `cache import` in
// another process never interleave on one bundle.
func TestNotaryWritesHoldTheRepositoryLock(t *testing.T) {
	_, srv := newFakeNotary(t, "../verify/notary/testdata/notary-v1/connaisseur/never-expire-image")
	src := newNotarySource(t, srv.URL, []string{neverExpirePin}, false)
	probe := &lockProbe{Fetcher: src.Fetcher, dir: src.Dir, repo: neverExpireGUN}
	src.Fetcher = probe
	if err := src.SyncPulled(context.Background(), neverExpireGUN, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(probe.free) == 0 {
		t.Fatal("nothing fetched")
	}
	for i, free := range probe.free {
		if free {
			t.Errorf("fetch %d at a pull: the repository's file lock was free", i)
		}
	}
	// Released afterwards.
	l, err := lockFile(repoLockPath(src.Dir, neverExpireGUN), syscall.LOCK_NB)
	if err != nil {
		t.Fatalf("lock still held after the fetch: %v", err)
	}
	l.Unlock()

	// cache import waits for the repository's lock.
	b, err := src.readBundle(neverExpireGUN)
	if err != nil {
		t.Fatal(err)
	}
	held, err := lockFile(repoLockPath(src.Dir, neverExpireGUN), 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := src.importBundle(b, time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		held.Unlock()
		t.Fatalf("import did not wait for the repository's lock (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held.Unlock()
	if err := <-done; err != nil {
		t.Errorf("import after the lock was released: %v", err)
	}
}
