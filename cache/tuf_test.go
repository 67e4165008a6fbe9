package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

// countingFetcher records the URLs fetched and the bytes received.
type countingFetcher struct {
	mu    sync.Mutex
	inner Fetcher
	urls  []string
	bytes int
}

func (c *countingFetcher) Fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	b, err := c.inner.Fetch(ctx, url, limit)
	c.mu.Lock()
	c.urls = append(c.urls, url[strings.LastIndexByte(url, '/')+1:])
	c.bytes += len(b)
	c.mu.Unlock()
	return b, err
}

func (c *countingFetcher) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.urls
	c.urls, c.bytes = nil, 0
	return u
}

func newTUF(t *testing.T) (*harness.TUFRepo, *TUFSource, *countingFetcher) {
	t.Helper()
	repo := harness.NewTUFRepo(t)
	root, err := os.ReadFile(repo.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	f := &countingFetcher{inner: &HTTPFetcher{Timeout: 5 * time.Second}}
	src := &TUFSource{Name: "corp", URL: repo.URL(), Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: f}
	return repo, src, f
}

func manifest(s string) []byte {
	return []byte(`{"schemaVersion":2,"config":{"digest":"` + string(digest.FromString(s)) + `"}}`)
}

func TestTUFSyncAndLoad(t *testing.T) {
	repo, src, f := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	repo.SetTarget("docker.io/library/nginx:1.25", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := src.Sync(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatal("first sync must change the cache")
	}
	hello := res.Index.Repo("127.0.0.1:5000/demo/hello")
	if hello == nil || hello.Tags["1.0"]["targets"].Digest != digest.FromBytes(manifest("a")) {
		t.Fatalf("index: %+v", res.Index.RepoNames())
	}
	if res.Index.Repo("docker.io/library/nginx") == nil {
		t.Fatal("nginx missing")
	}

	// Offline load gives the same index.
	ix, err := src.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ix.Repo("127.0.0.1:5000/demo/hello").Tags["1.0"]["targets"] != hello.Tags["1.0"]["targets"] {
		t.Fatal("loaded index differs")
	}

	// An unchanged repository costs one timestamp request (the first
	// sync probed for a new root just now).
	f.reset()
	res, err = src.Sync(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed {
		t.Fatal("unchanged repository changed the cache")
	}
	if got := f.reset(); len(got) != 1 || got[0] != "timestamp.json" {
		t.Fatalf("unchanged refresh fetched %v", got)
	}

	// A new target arrives.
	repo.SetTarget("127.0.0.1:5000/demo/hello:2.0", manifest("c"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	res, err = src.Sync(ctx, time.Now())
	if err != nil || !res.Changed {
		t.Fatalf("changed=%v err=%v", res != nil && res.Changed, err)
	}
	if res.Index.Repo("127.0.0.1:5000/demo/hello").Tags["2.0"] == nil {
		t.Fatal("new tag missing")
	}
}

func TestTUFDelegations(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.AddDelegation("team", []string{"127.0.0.1:5000/team/*"})
	repo.SetDelegatedTarget("team", "127.0.0.1:5000/team/app:1", manifest("team"))
	// A target outside the delegation's paths must not count.
	repo.SetDelegatedTarget("team", "127.0.0.1:5000/other/app:1", manifest("other"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	res, err := src.Sync(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	app := res.Index.Repo("127.0.0.1:5000/team/app")
	if app == nil || app.Tags["1"]["team"].Digest != digest.FromBytes(manifest("team")) {
		t.Fatalf("delegated target missing: %+v", res.Index.RepoNames())
	}
	if res.Index.Repo("127.0.0.1:5000/other/app") != nil {
		t.Fatal("a target outside the delegation's paths was trusted")
	}
	if _, err := src.Load(); err != nil {
		t.Fatalf("load with delegations: %v", err)
	}
}

func TestTUFBadDataNeverReplacesGood(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	tsPath := filepath.Join(repo.Dir(), "timestamp.json")
	oldTS, _ := os.ReadFile(tsPath)
	repo.SetTarget("127.0.0.1:5000/demo/hello:2.0", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Sync(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(src.bundlePath())
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		tamper func(t *testing.T)
		want   string
	}{
		{"tampered targets", func(t *testing.T) {
			repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("evil"))
			if err := repo.Publish(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(repo.Dir(), "targets.json")
			b, _ := os.ReadFile(p)
			i := strings.Index(string(b), `"sha256":"`) + len(`"sha256":"`)
			if b[i] == 'a' {
				b[i] = 'b'
			} else {
				b[i] = 'a'
			}
			os.WriteFile(p, b, 0o644)
		}, "targets"},
		{"rollback of timestamp", func(t *testing.T) {
			os.WriteFile(tsPath, oldTS, 0o644)
		}, "timestamp"},
		{"timestamp with a bad signature", func(t *testing.T) {
			b, _ := os.ReadFile(tsPath)
			if !strings.Contains(string(b), `"expires": "2`) {
				t.Fatalf("unexpected timestamp: %s", b)
			}
			os.WriteFile(tsPath, []byte(strings.Replace(string(b), `"expires": "2`, `"expires": "3`, 1)), 0o644)
		}, "timestamp"},
		{"garbage timestamp", func(t *testing.T) {
			os.WriteFile(tsPath, []byte("{not json"), 0o644)
		}, "timestamp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.tamper(t)
			if _, err := src.Sync(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("sync of bad data: err=%v, want one naming %q", err, tc.want)
			}
			now, err := os.ReadFile(src.bundlePath())
			if err != nil || string(now) != string(good) {
				t.Fatal("bad data replaced the good cache")
			}
			if _, err := src.Load(); err != nil {
				t.Fatalf("cache no longer loads: %v", err)
			}
		})
	}
}

func TestTUFExpiredTimestampIsRefused(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(harness.TUFExpiry + time.Hour)
	_, err := src.Sync(context.Background(), future)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("sync at a time past expiry: %v", err)
	}
	if _, err := src.Load(); !errors.Is(err, ErrNoData) {
		t.Fatalf("nothing must have been cached: %v", err)
	}
}

func TestTUFCorruptCacheIsMovedAside(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Sync(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(src.bundlePath())
	// Flip one byte inside the base64 of the targets metadata.
	i := strings.Index(string(b), `"targets":"`) + 20
	b[i] ^= 1
	if err := os.WriteFile(src.bundlePath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(); err == nil || !strings.Contains(err.Error(), "moved aside") {
		t.Fatalf("corrupt cache: %v", err)
	}
	matches, _ := filepath.Glob(src.bundlePath() + ".bad-*")
	if len(matches) != 1 {
		t.Fatalf("moved-aside file: %v", matches)
	}
	if res, err := src.Sync(ctx, time.Now()); err != nil || !res.Changed {
		t.Fatalf("re-fetch after a corrupt cache: %v", err)
	}
	if _, err := src.Load(); err != nil {
		t.Fatal(err)
	}
}

// TestTUFRefreshRequests counts the requests of a refresh (issue 7): one
// for an unchanged repository whose root was probed less than
// RootCheckInterval ago, also after a restart; the root probe first once
// the interval has elapsed; and a root rotation published with a new
// timestamp is followed at once, inside the interval.
func TestTUFRefreshRequests(t *testing.T) {
	repo, src, f := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Now()
	sync := func(src *TUFSource, now time.Time) *SyncResult {
		t.Helper()
		res, err := src.Sync(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	want := func(what string, urls ...string) {
		t.Helper()
		if got := f.reset(); strings.Join(got, " ") != strings.Join(urls, " ") {
			t.Fatalf("%s fetched %v, want %v", what, got, urls)
		}
	}
	sync(src, t0)
	want("first sync", "2.root.json", "timestamp.json", "snapshot.json", "targets.json")

	sync(src, t0.Add(time.Minute))
	want("unchanged refresh", "timestamp.json")
	restarted := *src
	sync(&restarted, t0.Add(2*time.Minute))
	want("unchanged refresh after a restart", "timestamp.json")

	// The interval elapsed: the whole update, root first.
	sync(src, t0.Add(DefaultRootCheckInterval+time.Minute))
	want("unchanged refresh after the interval", "2.root.json", "timestamp.json")
	sync(src, t0.Add(DefaultRootCheckInterval+2*time.Minute))
	want("unchanged refresh after the probe", "timestamp.json")
	// A clock set back probes again.
	sync(src, t0)
	want("unchanged refresh with the clock set back", "2.root.json", "timestamp.json")

	// A probe on every sync when asked.
	always := *src
	always.RootCheckInterval = -1
	sync(&always, t0.Add(time.Second))
	want("unchanged refresh with RootCheckInterval < 0", "2.root.json", "timestamp.json")

	// A root rotation with a new timestamp, well within the interval: the
	// new root is walked first, and the timestamp signed by the new key is
	// fetched again after it.
	if err := repo.RotateKey("timestamp"); err != nil {
		t.Fatal(err)
	}
	repo.SetTarget("127.0.0.1:5000/demo/hello:2.0", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	res := sync(src, t0.Add(2*time.Second))
	want("refresh after a root rotation", "timestamp.json", "2.root.json", "3.root.json", "timestamp.json", "snapshot.json", "targets.json")
	if !res.Changed || !strings.Contains(res.Summary, "root v2") || res.Index.Repo("127.0.0.1:5000/demo/hello").Tags["2.0"] == nil {
		t.Fatalf("rotation not followed: changed=%v %s", res.Changed, res.Summary)
	}
	sync(src, t0.Add(3*time.Second))
	want("unchanged refresh after the rotation", "timestamp.json")

	// A root rotation alone, the timestamp left as it was: seen once the
	// interval has elapsed.
	if err := repo.RotateKey("root"); err != nil {
		t.Fatal(err)
	}
	sync(src, t0.Add(4*time.Second))
	want("refresh inside the interval after a lone root rotation", "timestamp.json")
	res = sync(src, t0.Add(DefaultRootCheckInterval+4*time.Second))
	want("refresh after the interval after a lone root rotation", "3.root.json", "4.root.json", "timestamp.json")
	if !res.Changed || !strings.Contains(res.Summary, "root v3") {
		t.Fatalf("lone rotation not followed: changed=%v %s", res.Changed, res.Summary)
	}
}
