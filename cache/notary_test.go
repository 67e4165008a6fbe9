package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustd/trustd/policy"
)

// The connaisseur "never-expire" repository: real Notary data whose root
// certificate (CN securesystems.de) must be pinned by key ID.
const (
	neverExpireGUN  = "docker.io/securesystemsengineering/never-expire"
	neverExpirePin  = "52e8085cd75be93c5062130e08663a83a20f2eb9baf31f28eef4735e50f3a407"
	neverExpireSign = "sha256:a154797b8300165956ee1f16d98f3a1426301c1168f0462c73ce9bc03361cabf"
)

// fakeNotary serves a directory of Notary metadata for one GUN at
// /v2/<gun>/_trust/tuf/<role>.json — the network edge; the real
// notary-server is exercised by the end-to-end tests.
type fakeNotary struct {
	mu    sync.Mutex
	files map[string][]byte // role -> bytes
	hits  []string
}

func newFakeNotary(t *testing.T, dir string) (*fakeNotary, *httptest.Server) {
	t.Helper()
	f := &fakeNotary{files: map[string][]byte{}}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err == nil { // stored re-indented
			b = buf.Bytes()
		}
		rel, _ := filepath.Rel(dir, p)
		f.files[strings.TrimSuffix(rel, ".json")] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix := "/v2/" + neverExpireGUN + "/_trust/tuf/"
		if !strings.HasPrefix(r.URL.Path, prefix) {
			http.NotFound(w, r)
			return
		}
		role := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, prefix), ".json")
		f.mu.Lock()
		b, ok := f.files[role]
		f.hits = append(f.hits, role)
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeNotary) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hits
	f.hits = nil
	return h
}

func mustPatterns(t *testing.T, ps ...string) []policy.Pattern {
	t.Helper()
	var out []policy.Pattern
	for _, s := range ps {
		p, err := policy.ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func newNotarySource(t *testing.T, url string, pin []string, tofu bool) *NotarySource {
	t.Helper()
	s := &NotarySource{
		SourceName: "hub", URL: url, Dir: filepath.Join(t.TempDir(), "hub"),
		Fetcher:      &HTTPFetcher{Timeout: 5 * time.Second},
		Repositories: mustPatterns(t, "docker.io/securesystemsengineering/**", neverExpireGUN),
		TOFU:         tofu,
	}
	if pin != nil {
		s.Pins = []NotaryPin{{Repositories: mustPatterns(t, "docker.io/securesystemsengineering/*"), RootKeys: pin}}
	}
	return s
}

func TestNotarySyncLoadAndRefresh(t *testing.T) {
	fake, srv := newFakeNotary(t, "../verify/notary/testdata/notary-v1/connaisseur/never-expire-image")
	src := newNotarySource(t, srv.URL, []string{neverExpirePin}, false)
	ctx := context.Background()
	res, err := src.Sync(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Index.Repo(neverExpireGUN)
	if !res.Changed || r == nil || string(r.Tags["sign"]["targets"].Digest) != neverExpireSign {
		t.Fatalf("changed=%v repo=%+v", res.Changed, r)
	}
	if got := fake.take(); strings.Join(got, ",") != "timestamp,root,snapshot,targets" {
		t.Fatalf("first sync fetched %v", got)
	}
	// Unchanged: one timestamp request.
	res, err = src.Sync(ctx, time.Now())
	if err != nil || res.Changed {
		t.Fatalf("unchanged sync: changed=%v err=%v", res != nil && res.Changed, err)
	}
	if got := fake.take(); strings.Join(got, ",") != "timestamp" {
		t.Fatalf("unchanged sync fetched %v", got)
	}
	// Offline.
	srv.Close()
	fresh := newNotarySource(t, "http://127.0.0.1:1", []string{neverExpirePin}, false)
	fresh.Dir = src.Dir
	ix, err := fresh.Load()
	if err != nil || ix.Repo(neverExpireGUN) == nil {
		t.Fatalf("offline load: %v", err)
	}
}

func TestNotaryPinning(t *testing.T) {
	_, srv := newFakeNotary(t, "../verify/notary/testdata/notary-v1/connaisseur/never-expire-image")
	for _, tc := range []struct {
		name string
		pin  []string
		tofu bool
		want string
	}{
		{"not pinned", nil, false, `root_keys = ["` + neverExpirePin + `"]`},
		{"wrong pin", []string{strings.Repeat("ab", 32)}, false, "pinned root_keys"},
		{"TOFU refuses a root it cannot tie to the GUN", nil, true, "no acceptable root certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newNotarySource(t, srv.URL, tc.pin, tc.tofu)
			_, err := src.Sync(context.Background(), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want %q", err, tc.want)
			}
			if ix, _ := src.Load(); ix.NumRepos() != 0 {
				t.Fatal("refused data was cached")
			}
		})
	}
}

func TestNotaryBadDataKeepsCache(t *testing.T) {
	fake, srv := newFakeNotary(t, "../verify/notary/testdata/notary-v1/connaisseur/never-expire-image")
	src := newNotarySource(t, srv.URL, []string{neverExpirePin}, false)
	ctx := context.Background()
	if _, err := src.Sync(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(src.bundlePath(neverExpireGUN))
	// A timestamp whose signature no longer verifies.
	fake.mu.Lock()
	fake.files["timestamp"] = bytes.Replace(fake.files["timestamp"], []byte(`"version":`), []byte(`"version":1`), 1)
	fake.mu.Unlock()
	if _, err := src.Sync(ctx, time.Now()); err == nil {
		t.Fatal("tampered timestamp accepted")
	}
	now, _ := os.ReadFile(src.bundlePath(neverExpireGUN))
	if !bytes.Equal(good, now) {
		t.Fatal("bad data replaced the cache")
	}
	// Gone from the server: the cached data stays, the sync says so.
	fake.mu.Lock()
	delete(fake.files, "timestamp")
	fake.mu.Unlock()
	if _, err := src.Sync(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "no longer has trust data") {
		t.Fatalf("vanished repository: %v", err)
	}
	if ix, err := src.Load(); err != nil || ix.Repo(neverExpireGUN) == nil {
		t.Fatalf("cache lost: %v", err)
	}
}

func TestNotaryUnsignedRepository(t *testing.T) {
	_, srv := newFakeNotary(t, "../verify/notary/testdata/notary-v1/connaisseur/never-expire-image")
	src := newNotarySource(t, srv.URL, []string{neverExpirePin}, false)
	src.Repositories = mustPatterns(t, "docker.io/securesystemsengineering/**")
	src.Want("docker.io/securesystemsengineering/unsigned", "quay.io/not/covered")
	res, err := src.Sync(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Index.NumRepos() != 0 || !strings.Contains(res.Summary, "1 repositories") {
		t.Fatalf("summary %q repos %v", res.Summary, res.Index.RepoNames())
	}
}
