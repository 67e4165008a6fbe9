package cache

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/test/harness"
)

// attacker is a man in the middle in front of a TUF repository: by file
// name it can replay recorded bytes, stream forever, or trickle.
type attacker struct {
	mu       sync.Mutex
	upstream string
	replay   map[string][]byte
	endless  map[string]bool
	trickle  map[string]bool
}

func newAttacker(t *testing.T, upstream string) (*attacker, string) {
	a := &attacker{upstream: upstream, replay: map[string][]byte{}, endless: map[string]bool{}, trickle: map[string]bool{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL + "/metadata/"
}

func (a *attacker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := filepath.Base(r.URL.Path)
	a.mu.Lock()
	replay, endless, trickle := a.replay[name], a.endless[name], a.trickle[name]
	a.mu.Unlock()
	switch {
	case endless:
		chunk := []byte(strings.Repeat(" ", 32<<10))
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	case trickle:
		for i := 0; ; i++ {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	case replay != nil:
		w.Write(replay)
		return
	}
	resp, err := http.Get(a.upstream + name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (a *attacker) set(f func(a *attacker)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// TestTUFThreats covers the TUF threat list for a standard TUF source, each
// attack on top of a cache that holds good data: the attack is refused with
// an error naming it, and the good data stays in force.
func TestTUFThreats(t *testing.T) {
	repo := harness.NewTUFRepo(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v1"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(repo.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 := map[string][]byte{"timestamp.json": read("timestamp.json"), "snapshot.json": read("snapshot.json"), "targets.json": read("targets.json")}
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v2"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		attack func(a *attacker)
		want   string
	}{
		{"rollback: an older timestamp replayed", func(a *attacker) { a.replay["timestamp.json"] = v1["timestamp.json"] }, "timestamp"},
		{"mix and match: current timestamp, older snapshot", func(a *attacker) { a.replay["snapshot.json"] = v1["snapshot.json"] }, "snapshot"},
		{"mix and match: older targets under the current snapshot", func(a *attacker) {
			a.replay["targets.json"] = v1["targets.json"]
			a.replay["timestamp.json"] = nil
		}, "targets"},
		{"endless data: a timestamp that never ends", func(a *attacker) { a.endless["timestamp.json"] = true }, "larger than allowed"},
		{"endless data: a snapshot longer than the timestamp says", func(a *attacker) { a.endless["snapshot.json"] = true }, "larger than allowed"},
		{"slow retrieval: a server trickling bytes", func(a *attacker) { a.trickle["timestamp.json"] = true }, "deadline exceeded"},
		{"arbitrary target: targets re-written by the attacker", func(a *attacker) {
			b := v1["targets.json"]
			i := strings.Index(string(b), `"sha256": "`) + len(`"sha256": "`)
			evil := []byte(string(b))
			evil[i] ^= 1
			a.replay["targets.json"] = evil
		}, "targets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, url := newAttacker(t, repo.URL())
			root, _ := os.ReadFile(repo.RootPath())
			src := &TUFSource{Name: "corp", URL: url, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: &HTTPFetcher{Timeout: time.Second}}
			// Good data first: version 2 in the cache.
			if _, err := src.Sync(context.Background(), time.Now()); err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(src.bundlePath())
			// The repository moves on, so that the client has to fetch
			// every role again: that is where the attacker steps in.
			repo.SetTarget("127.0.0.1:5000/demo/other:"+strings.ReplaceAll(tc.name[:8], " ", "-"), manifest(tc.name))
			if err := repo.Publish(); err != nil {
				t.Fatal(err)
			}
			a.set(tc.attack)
			start := time.Now()
			_, err := src.Sync(context.Background(), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("attack not refused as expected: err=%v, want %q", err, tc.want)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("the attack held the sync for %v", took) // bound, not a benchmark
			}
			now, _ := os.ReadFile(src.bundlePath())
			if string(now) != string(good) {
				t.Fatal("the attack changed the cache")
			}
			ix, err := src.Load()
			if err != nil || ix.Repo("127.0.0.1:5000/demo/hello").Tags["1.0"]["targets"].Digest.String() == "" {
				t.Fatalf("good data lost: %v", err)
			}
		})
	}
}

// TestTUFRollbackAcrossRestart: a new process (a fresh TUFSource on the
// same cache) still refuses metadata older than what the cache holds.
func TestTUFRollbackAcrossRestart(t *testing.T) {
	repo := harness.NewTUFRepo(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v1"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	oldTS, _ := os.ReadFile(filepath.Join(repo.Dir(), "timestamp.json"))
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v2"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	a, url := newAttacker(t, repo.URL())
	root, _ := os.ReadFile(repo.RootPath())
	dir := filepath.Join(t.TempDir(), "corp")
	first := &TUFSource{Name: "corp", URL: url, Root: root, Dir: dir, Fetcher: &HTTPFetcher{Timeout: time.Second}}
	if _, err := first.Sync(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	a.set(func(a *attacker) { a.replay["timestamp.json"] = oldTS })
	restarted := &TUFSource{Name: "corp", URL: url, Root: root, Dir: dir, Fetcher: &HTTPFetcher{Timeout: time.Second}}
	_, err := restarted.Sync(context.Background(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Fatalf("rollback after restart: %v", err)
	}
	var unreachable bool
	if errors.Is(err, ErrUnreachable) {
		unreachable = true
	}
	if unreachable {
		t.Fatal("a rollback must not count as an unreachable source (no offline grace)")
	}
}

// TestNotaryNetworkAttacks: the same size and time bounds hold for Notary
// sources (a fake at the network edge; the real notary-server is covered
// end to end).
func TestNotaryNetworkAttacks(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want string
	}{
		{"endless data: a timestamp that never ends", func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat(" ", 32<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "larger than allowed"},
		{"slow retrieval: a server trickling bytes", func(w http.ResponseWriter, r *http.Request) {
			for {
				if _, err := w.Write([]byte(" ")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			src := newNotarySource(t, srv.URL, []string{neverExpirePin}, false)
			src.Fetcher = &HTTPFetcher{Timeout: time.Second}
			start := time.Now()
			_, err := src.Sync(context.Background(), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want %q", err, tc.want)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("held for %v", took)
			}
		})
	}
}

// TestTUFFastForwardRecovery: an attacker with the timestamp key pushed the
// timestamp version far ahead (fast-forward); the repository owner rotates
// the timestamp key and starts the versions again. The client must follow
// (the new root no longer trusts the old key, so the old version no longer
// binds), and a rollback without rotation stays refused.
func TestTUFFastForwardRecovery(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	repo.SetTimestampVersion(999) // the compromised key signs version 1000
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Sync(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Without a key rotation, version 1 after 1000 is a rollback.
	repo.SetTimestampVersion(0)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Sync(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Fatalf("timestamp version reset without a key rotation: %v", err)
	}
	// Recovery: a new timestamp key in a new root, versions from 1 again.
	if err := repo.RotateKey("timestamp"); err != nil {
		t.Fatal(err)
	}
	repo.SetTimestampVersion(0)
	repo.SetTarget("127.0.0.1:5000/demo/hello:2.0", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	res, err := src.Sync(ctx, time.Now())
	if err != nil {
		t.Fatalf("recovery after the timestamp key rotation: %v", err)
	}
	if res.Index.Repo("127.0.0.1:5000/demo/hello").Tags["2.0"] == nil {
		t.Fatal("new data after recovery missing")
	}
	// And a restart loads it.
	if _, err := src.Load(); err != nil {
		t.Fatal(err)
	}
}

// TestTUFWrongKey: targets re-signed with a key the root does not list for
// targets (the attacker holds some other key) are refused.
func TestTUFWrongKey(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Sync(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	a, url := newAttacker(t, repo.URL())
	src.URL = url
	b, err := os.ReadFile(filepath.Join(repo.Dir(), "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.Targets().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Targets["127.0.0.1:5000/demo/hello:1.0"].Hashes["sha256"][0] ^= 1
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := signature.LoadED25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	if _, err := md.Sign(signer); err != nil {
		t.Fatal(err)
	}
	forged, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	a.set(func(a *attacker) { a.replay["targets.json"] = forged })
	if _, err := src.Sync(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "targets") {
		t.Fatalf("targets signed by a wrong key: %v", err)
	}
}

// TestTUFKeyCompromiseBelowThreshold: with targets at threshold 2, an
// attacker holding one targets key cannot sign targets alone; both keys
// together can (the control). The repository is signed by hand, not with
// internal/testtuf: the attack needs a targets role of threshold 2 signed
// by fewer keys, which a well-formed builder never writes.
func TestTUFKeyCompromiseBelowThreshold(t *testing.T) {
	newSigner := func() (*metadata.Key, signature.Signer) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err := signature.LoadED25519Signer(priv)
		if err != nil {
			t.Fatal(err)
		}
		k, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return k, s
	}
	write := func(dir, name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := func(t *testing.T, signTargets int) (*TUFSource, func() error) {
		exp := time.Now().Add(24 * time.Hour)
		dir := t.TempDir()
		root := metadata.Root(exp)
		rk, rs := newSigner()
		k1, s1 := newSigner()
		k2, s2 := newSigner()
		sk, ss := newSigner()
		tk, ts := newSigner()
		for _, kr := range []struct {
			k    *metadata.Key
			role string
		}{{rk, "root"}, {k1, "targets"}, {k2, "targets"}, {sk, "snapshot"}, {tk, "timestamp"}} {
			if err := root.Signed.AddKey(kr.k, kr.role); err != nil {
				t.Fatal(err)
			}
		}
		root.Signed.Roles["targets"].Threshold = 2
		root.Signed.ConsistentSnapshot = false
		root.Sign(rs)
		rootBytes, _ := root.ToBytes(true)
		write(dir, "root.json", rootBytes)

		targets := metadata.Targets(exp)
		m := manifest("evil")
		tf, err := metadata.TargetFile().FromBytes("127.0.0.1:5000/demo/hello:1.0", m)
		if err != nil {
			t.Fatal(err)
		}
		targets.Signed.Targets[tf.Path] = tf
		for _, s := range []signature.Signer{s1, s2}[:signTargets] {
			if _, err := targets.Sign(s); err != nil {
				t.Fatal(err)
			}
		}
		tb, _ := targets.ToBytes(true)
		write(dir, "targets.json", tb)
		snap := metadata.Snapshot(exp)
		snap.Signed.Meta["targets.json"] = metadata.MetaFile(1)
		snap.Sign(ss)
		sb, _ := snap.ToBytes(true)
		write(dir, "snapshot.json", sb)
		tsm := metadata.Timestamp(exp)
		tsm.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
		tsm.Sign(ts)
		tsb, _ := tsm.ToBytes(true)
		write(dir, "timestamp.json", tsb)
		srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
		t.Cleanup(srv.Close)
		src := &TUFSource{Name: "corp", URL: srv.URL + "/", Root: rootBytes, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: &HTTPFetcher{Timeout: 5 * time.Second}}
		return src, func() error { _, err := src.Sync(context.Background(), time.Now()); return err }
	}
	t.Run("one of two targets keys: refused", func(t *testing.T) {
		_, sync := build(t, 1)
		if err := sync(); err == nil || !strings.Contains(err.Error(), "targets") {
			t.Fatalf("targets signed by 1 of 2 keys: %v", err)
		}
	})
	t.Run("both keys: accepted", func(t *testing.T) {
		_, sync := build(t, 2)
		if err := sync(); err != nil {
			t.Fatalf("targets signed by both keys: %v", err)
		}
	})
}
