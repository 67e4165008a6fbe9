// Package cache keeps trustd's verified trust data on disk and refreshes it
// from the policy's sources. Every write is crash-safe (a temp file in the
// same directory, fsync, rename, fsync of the directory), so a crash at any
// point leaves either the previous or the new data, never a mix; nothing
// is written before it has been verified, so broken or hostile data from a
// source never replaces good cached data.
package cache

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WriteFileAtomic replaces path with data: temp file in the same
// directory, fsync, rename, fsync of the directory. Readers see the old
// or the new content, never a partial file, across crashes.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	cleanup := func(e error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, e)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Chmod(perm); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// RemoveStaleTemps removes the temporary files that writes of path
// interrupted by a crash left behind. Call it only while holding the lock
// that serialises writers of path.
func RemoveStaleTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// RemoveStaleTempsIn removes, in one pass over dir, the temporary files
// that interrupted WriteFileAtomic calls left there: those older than
// staleTempAge, so that a write in flight (a write takes milliseconds) is
// never disturbed, whoever makes it. It is for directories of many files,
// where RemoveStaleTemps per write would read the directory once per file.
func RemoveStaleTempsIn(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if !strings.HasPrefix(n, ".") || !strings.Contains(n, ".tmp-") {
				continue
			}
			p := filepath.Join(dir, n)
			if fi, err := os.Lstat(p); err == nil && time.Since(fi.ModTime()) > staleTempAge {
				os.Remove(p)
			}
		}
		if err != nil {
			return
		}
	}
}

// staleTempAge is how old a temporary file must be for RemoveStaleTempsIn
// to take it for the leftover of a crash.
const staleTempAge = time.Minute

// SyncDir fsyncs a directory, so that the renames and creations in it
// are durable.
func SyncDir(dir string) error { return syncDir(dir) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// readFileLimit reads a whole file of at most limit bytes.
func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read into a buffer of the file's size (plus one byte, to see EOF):
	// a large file is read without the copies of a growing buffer.
	size := int64(512)
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		size = min(fi.Size(), limit) + 1
	}
	b := make([]byte, 0, size)
	for int64(len(b)) <= limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):min(int64(cap(b)), limit+1)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// Lock is an exclusive advisory lock on a cache directory (or on one
// repository's bundle, lockRepo), held while its content is replaced so
// that a daemon and a `trustd sync` do not race.
type Lock struct{ f *os.File }

// LockDir takes the lock file of dir, waiting for other holders.
func LockDir(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	return lockFile(filepath.Join(dir, "lock"), 0)
}

// repoLockStripes is how many lock files guard the per-repository bundles
// of one source: a bounded number, whatever names pulls carry.
const repoLockStripes = 64

// lockRepo takes the lock that every writer of repository repo's bundle in
// source directory dir holds from reading the bundle it replaces to
// renaming the new one into place: a sync round (under the store's lock
// too), a fetch at a pull (which must not wait for a whole round, so it
// takes this lock alone) and `cache import`, in this process or another.
// Lock order: the store's lock (LockDir) before a repository's.
func lockRepo(dir, repo string) (*Lock, error) {
	return lockFile(repoLockPath(dir, repo), 0)
}

func repoLockPath(dir, repo string) string {
	h := fnv.New32a()
	h.Write([]byte(repo))
	return filepath.Join(dir, "locks", fmt.Sprintf("%02d", h.Sum32()%repoLockStripes))
}

// repoMutexes serialises work on one repository within a process: one
// refresh (or write) of a repository at a time. An entry lives only while
// someone holds or waits for it, so that the names refreshed (any name a
// pull carries) do not accumulate. The zero value is ready to use.
type repoMutexes struct {
	mu sync.Mutex
	m  map[string]*repoMutex
}

type repoMutex struct {
	sync.Mutex
	refs int // holders and waiters, under repoMutexes.mu
}

// lock takes repo's mutex and returns its release.
func (r *repoMutexes) lock(repo string) (unlock func()) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*repoMutex{}
	}
	l := r.m[repo]
	if l == nil {
		l = &repoMutex{}
		r.m[repo] = l
	}
	l.refs++
	r.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		r.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(r.m, repo)
		}
		r.mu.Unlock()
	}
}

// lockFile takes an exclusive flock on path (created), waiting for other
// holders; flags may add syscall.LOCK_NB.
func lockFile(path string, flags int) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|flags); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}

// moveAside renames a cached bundle that no longer verifies out of the
// way (kept for inspection, never read again) and says where it went; the
// source then fetches afresh. It is the one place bundles are set aside.
func moveAside(p string) string {
	aside := fmt.Sprintf("%s.bad-%d", p, time.Now().UnixNano())
	if err := os.Rename(p, aside); err != nil {
		return "could not move it aside: " + err.Error()
	}
	syncDir(filepath.Dir(p))
	return "moved aside to " + filepath.Base(aside)
}
