package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/trustd/trustd/cache/cosign"
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

// TestSigstoreWritesHoldTheRepositoryLock: adding cosign signatures to the
// cache (a pull, a sync, `verify --archive --import`) waits for the
// repository's file lock, which a writer in another process may hold.
func TestSigstoreWritesHoldTheRepositoryLock(t *testing.T) {
	k, key := testKey(t)
	repo := "registry.corp.example/apps/web"
	d := digest.FromString("image")
	src := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: mustPatterns(t, "registry.corp.example/**"), Verifier: &cosign.Verifier{Keys: []cosign.Key{key}}}
	payload := cosignPayload(repo, d)
	art := cosign.Artifact{Payload: payload, Signature: ecSign(t, k, payload)}

	held, err := lockFile(repoLockPath(src.Dir, repo), 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := src.AddSignatures(repo, d, []cosign.Artifact{art}, true)
		done <- err
	}()
	select {
	case err := <-done:
		held.Unlock()
		t.Fatalf("signatures written without the repository's lock (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held.Unlock()
	if err := <-done; err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
	if _, err := os.Stat(src.bundlePath(repo)); err != nil {
		t.Errorf("signatures not written: %v", err)
	}
}

// TestSigstoreRepositoryLocksDoNotAccumulate: the per-repository lock of a
// sigstore source lives only while held, whatever names pulls carry.
func TestSigstoreRepositoryLocksDoNotAccumulate(t *testing.T) {
	_, key := testKey(t)
	src := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: mustPatterns(t, "registry.corp.example/**"), Verifier: &cosign.Verifier{Keys: []cosign.Key{key}}}
	for i := range 100 {
		repo := fmt.Sprintf("registry.corp.example/pulled/%d", i)
		src.AddSignatures(repo, digest.FromString(repo), nil, false)
	}
	if n := src.NumRepoLocks(); n != 0 {
		t.Errorf("%d repository locks kept after the work ended", n)
	}
}
