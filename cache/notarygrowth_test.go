package cache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
)

// growthServer is a Notary server of generated repositories that records
// which repositories each request asked for (the network edge).
type growthServer struct {
	*gen.Server
	keys   *gen.NotaryKeys
	notary *gen.NotaryServer
	caFile string

	mu    sync.Mutex
	asks  []string                   // GUNs asked for, in order
	repos map[string]*gen.NotaryRepo // as last published
}

func newGrowthServer(t *testing.T, now time.Time) *growthServer {
	t.Helper()
	keys, err := gen.NewNotaryKeys(true, now)
	if err != nil {
		t.Fatal(err)
	}
	g := &growthServer{keys: keys, notary: gen.NewNotaryServer()}
	g.Server = gen.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gun, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/_trust/"); ok {
			g.mu.Lock()
			g.asks = append(g.asks, gun)
			g.mu.Unlock()
		}
		g.notary.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	g.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(g.caFile, keys.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// publish signs gun with tags tags (v0.0, v0.1, ...) at version v, under
// the root it was published with before, if any.
func (g *growthServer) publish(t *testing.T, gun string, tags, v int, now time.Time) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	r, err := gen.NewNotaryRepo(g.keys, gen.NotaryOptions{GUN: gun, Tags: tags, Version: v, Now: now, SameRootAs: g.repos[gun]})
	if err != nil {
		t.Fatal(err)
	}
	if g.repos == nil {
		g.repos = map[string]*gen.NotaryRepo{}
	}
	g.repos[gun] = r
	g.notary.Put(r)
}

// take returns the distinct GUNs asked for since the last take, and the
// number of requests.
func (g *growthServer) take() (map[string]bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	set := map[string]bool{}
	for _, gun := range g.asks {
		set[gun] = true
	}
	n := len(g.asks)
	g.asks = nil
	return set, n
}

// source returns the hub source for the generated repositories, with a
// literal repository added to its patterns.
func (g *growthServer) source(t *testing.T, literal string) *cache.NotarySource {
	t.Helper()
	ns, err := gen.NotarySource(t.TempDir(), "hub", g.URL, g.keys.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	if literal != "" {
		p, err := policy.ParsePattern(literal)
		if err != nil {
			t.Fatal(err)
		}
		ns.Repositories = append(ns.Repositories, p)
	}
	return ns
}

// attackName is the i-th name of a flood of pulls: it sorts before every
// real repository.
func attackName(i int) string { return fmt.Sprintf("%s0000-flood-%04d", gen.NotaryPrefix, i) }

func hasTag(t *testing.T, res *cache.SyncResult, gun, tag string) bool {
	t.Helper()
	r := res.Index.Repo(gun)
	if r == nil {
		t.Fatalf("%s is not in the index (summary %q)", gun, res.Summary)
	}
	_, ok := r.Tags[tag]
	return ok
}

// TestNotaryPullFloodIsForgotten: 500 denied pulls of distinct repositories
// the server does not know write nothing to disk, and once their time is up
// a round asks for the real repository alone, after a restart too; a
// revocation in the real repository is seen in the round that follows it.
// Earlier versions wrote a marker for each name and asked for all of them
// every round, for ever.
func TestNotaryPullFloodIsForgotten(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGrowthServer(t, now)
	const web = gen.NotaryPrefix + "web"
	g.publish(t, web, 3, 1, now)
	cacheDir := t.TempDir()
	p, err := policy.Parse("policy.toml", gen.Policy(gen.PolicyOptions{CacheDir: cacheDir, ControlSocket: filepath.Join(cacheDir, "control.sock"), Notary: &gen.PolicyNotary{URL: g.URL, CA: g.caFile}}))
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*cache.Store, cache.Source) {
		store, err := cache.Open(p, &cache.HTTPFetcher{})
		if err != nil {
			t.Fatal(err)
		}
		store.LoadIndex()
		return store, store.Sources()[0]
	}
	store, src := open()
	if si, err := store.SyncRepository(ctx, "hub", web, "", now); err != nil || si.Repo(web) == nil {
		t.Fatalf("pull of the signed repository: %v", err)
	}
	for i := range 500 {
		if _, err := store.SyncRepository(ctx, "hub", attackName(i), "", now); err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	if n := store.PullDiscovered("hub", now); n != 500 {
		t.Errorf("PullDiscovered = %d, want 500", n)
	}
	files, _ := filepath.Glob(filepath.Join(gen.SourceDir(cacheDir, "hub"), "notary", "*0000-flood*"))
	if len(files) != 0 {
		t.Errorf("%d files written for repositories the server does not know (first %s)", len(files), filepath.Base(files[0]))
	}
	g.take()

	// Within the hour: the names are asked for, one request each.
	res, err := src.Sync(ctx, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if asked, n := g.take(); n > 501 || !asked[web] {
		t.Errorf("round within the hour: %d requests, real repository asked: %v", n, asked[web])
	}
	if !hasTag(t, res, web, gen.Tag(2)) {
		t.Fatal("tag not signed")
	}

	// The hour is up: the real repository alone, and its revocation seen.
	g.publish(t, web, 2, 2, now)
	later := now.Add(cache.DefaultNotaryPulledTTL + 2*time.Minute)
	res, err = src.Sync(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if asked, n := g.take(); len(asked) != 1 || !asked[web] {
		t.Errorf("round after the hour asked for %d repositories in %d requests, want %s alone", len(asked), n, web)
	}
	if hasTag(t, res, web, gen.Tag(2)) {
		t.Error("revoked tag still signed after the round")
	}
	if n := store.PullDiscovered("hub", later); n != 0 {
		t.Errorf("PullDiscovered after the hour = %d, want 0", n)
	}

	// A restart reads nothing back of the flood.
	_, src = open()
	if _, err := src.Sync(ctx, later.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if asked, n := g.take(); len(asked) != 1 || !asked[web] {
		t.Errorf("round after a restart asked for %d repositories in %d requests, want %s alone", len(asked), n, web)
	}
}

// TestNotaryRoundIsBoundedAndFair: with at most 10 repositories a round and
// 30 pulled ones kept, a flood of 500 pulls of unknown names (sorting before
// the real ones) leaves every round at 10 repositories, the literal and the
// cached repository refreshed in each (a revocation seen at once), the 30
// most recent names kept and each reached in turn.
func TestNotaryRoundIsBoundedAndFair(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGrowthServer(t, now)
	const base, web = gen.NotaryPrefix + "base", gen.NotaryPrefix + "web"
	g.publish(t, base, 3, 1, now)
	g.publish(t, web, 3, 1, now)
	ns := g.source(t, base)
	ns.RoundMax, ns.PulledCap = 10, 30
	if err := ns.SyncPulled(ctx, web, now); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := ns.SyncPulled(ctx, attackName(i), now.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n := ns.PullDiscovered(now); n != 30 {
		t.Fatalf("PullDiscovered = %d, want the cap, 30", n)
	}
	if n := ns.NumGUNLocks(); n != 0 {
		t.Errorf("%d per-repository locks left after the pulls, want 0", n)
	}
	g.take()

	reached := map[string]bool{}
	for round := range 5 {
		if round == 2 {
			g.publish(t, web, 2, 2, now) // revoke tag v0.2
			g.publish(t, base, 2, 2, now)
		}
		res, err := ns.Sync(ctx, now.Add(time.Duration(round+1)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		asked, n := g.take()
		if len(asked) > 10 || !asked[base] || !asked[web] {
			t.Fatalf("round %d asked for %d repositories in %d requests (base: %v, web: %v), want at most 10 with both real ones", round, len(asked), n, asked[base], asked[web])
		}
		if !strings.Contains(res.Summary, "wait for the next round") {
			t.Errorf("round %d summary %q does not say repositories wait", round, res.Summary)
		}
		for gun := range asked {
			reached[gun] = true
		}
		if round >= 2 && (hasTag(t, res, web, gen.Tag(2)) || hasTag(t, res, base, gen.Tag(2))) {
			t.Fatalf("round %d: revoked tag still signed", round)
		}
	}
	var flood []string
	for gun := range reached {
		if gun != base && gun != web {
			flood = append(flood, gun)
		}
	}
	slices.Sort(flood)
	if len(flood) != 30 || flood[0] != attackName(470) || flood[29] != attackName(499) {
		t.Errorf("the rounds reached %d pulled names (%v), want the 30 most recent, each once in turn", len(flood), flood)
	}
}

// TestNotaryPulledTTL: a repository seen at a pull is kept in sync until
// its time-to-live after the last pull that named it, judged at the time
// each call is given.
func TestNotaryPulledTTL(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	g := newGrowthServer(t, t0)
	ns := g.source(t, "")
	ns.PulledTTL = 10 * time.Minute
	gun := gen.NotaryPrefix + "unsigned"
	for _, at := range []time.Time{t0, t0.Add(5 * time.Minute)} { // pulled twice
		if err := ns.SyncPulled(ctx, gun, at); err != nil {
			t.Fatal(err)
		}
	}
	g.take()
	if _, err := ns.Sync(ctx, t0.Add(14*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if asked, _ := g.take(); !asked[gun] {
		t.Error("not refreshed before its time is up")
	}
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{14 * time.Minute, 1}, {15 * time.Minute, 0}, {16 * time.Minute, 0}} {
		if n := ns.PullDiscovered(t0.Add(tc.at)); n != tc.want {
			t.Errorf("PullDiscovered at +%s = %d, want %d", tc.at, n, tc.want)
		}
	}
	if _, err := ns.Sync(ctx, t0.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if asked, n := g.take(); n != 0 {
		t.Errorf("after its time: %d requests (%v)", n, asked)
	}
	// Signed later and pulled again: cached, no longer counted as pulled.
	g.publish(t, gun, 1, 1, t0)
	if err := ns.SyncPulled(ctx, gun, t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := ns.PullDiscovered(t0.Add(20 * time.Minute)); n != 0 {
		t.Errorf("a signed repository is still counted as pulled without trust data: %d", n)
	}
}

// TestNotaryUnsignedMarkersOfEarlierVersions: the "unsigned" markers that
// earlier versions wrote (one per unknown repository pulled) are not kept
// in sync: loaded or not, the next round removes them, asking the server
// at most once for each, and later rounds never.
func TestNotaryUnsignedMarkersOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGrowthServer(t, now)
	for _, load := range []bool{true, false} {
		t.Run(fmt.Sprintf("loaded=%v", load), func(t *testing.T) {
			ns := g.source(t, "")
			var paths []string
			for i := range 20 {
				gun := attackName(i)
				p := filepath.Join(ns.Dir, "notary", url.PathEscape(gun)+".json")
				marker := fmt.Sprintf(`{"format":1,"gun":%q,"verified":%q,"root":null,"timestamp":null,"snapshot":null,"targets":null,"state":{},"unsigned":true}`, gun, now.UTC().Format(time.RFC3339Nano))
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(marker), 0o600); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			if load {
				if _, err := ns.Load(); err != nil {
					t.Fatal(err)
				}
			}
			g.take()
			for round := range 3 {
				if _, err := ns.Sync(ctx, now.Add(time.Duration(round)*time.Minute)); err != nil {
					t.Fatal(err)
				}
				_, n := g.take()
				if round > 0 && n != 0 || n > 20 || load && n != 0 {
					t.Errorf("round %d: %d requests for markers", round, n)
				}
			}
			for _, p := range paths {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("marker %s is still on disk", filepath.Base(p))
				}
			}
		})
	}
}

// TestNotaryRoundLiteralFirst: when the cached repositories alone exceed a
// round, a repository the policy names literally is still refreshed every
// round, and the cached ones take turns.
func TestNotaryRoundLiteralFirst(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGrowthServer(t, now)
	const base = gen.NotaryPrefix + "zz-base" // sorts last
	g.publish(t, base, 1, 1, now)
	cached := []string{gen.NotaryPrefix + "a", gen.NotaryPrefix + "b", gen.NotaryPrefix + "c"}
	ns := g.source(t, base)
	ns.RoundMax = 2
	for _, gun := range cached {
		g.publish(t, gun, 1, 1, now)
		if err := ns.SyncPulled(ctx, gun, now); err != nil {
			t.Fatal(err)
		}
	}
	g.take()
	turns := map[string]int{}
	for round := range 6 {
		if _, err := ns.Sync(ctx, now.Add(time.Duration(round+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
		asked, _ := g.take()
		if len(asked) != 2 || !asked[base] {
			t.Fatalf("round %d asked for %v, want %s and one cached repository", round, asked, base)
		}
		for gun := range asked {
			turns[gun]++
		}
	}
	for _, gun := range cached {
		if turns[gun] != 2 {
			t.Errorf("%s refreshed in %d of 6 rounds, want 2 (turns %v)", gun, turns[gun], turns)
		}
	}
}
