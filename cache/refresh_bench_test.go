package cache_test

import (
	"context"
	cryptotls "crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
)

// copyCache copies a data set cache (or one source of it) to a temporary
// directory, so that a benchmark may sync it.
func copyCache(b *testing.B, src string) string {
	b.Helper()
	dst := filepath.Join(b.TempDir(), "cache")
	if err := gen.CopyDir(src, dst); err != nil {
		b.Fatal(err)
	}
	return dst
}

// reportWire reports what crossed the server's listener per operation.
func reportWire(b *testing.B, c *gen.Counter, ops int) {
	b.ReportMetric(float64(c.Bytes())/float64(ops), "wire-B/op")
	b.ReportMetric(float64(c.Requests.Load())/float64(ops), "requests/op")
	b.ReportMetric(float64(c.Conns.Load())/float64(ops), "conns/op")
}

// BenchmarkRefreshUnchanged measures one refresh of a repository whose
// trust data has not changed on the server, as the background sync does
// every `refresh` interval: requests and bytes on the wire (HTTP headers
// and bodies, both directions, counted at the server's listener) and the
// time, which includes re-verifying the cached data before the request.
func BenchmarkRefreshUnchanged(b *testing.B) {
	d := gen.BenchDataset(b)
	ctx := context.Background()
	ca, err := os.ReadFile(d.CAPath())
	if err != nil {
		b.Fatal(err)
	}
	// tls: 0 plain HTTP, 1 HTTPS with a new connection per refresh, 2 the
	// same with TLS session resumption (a client session cache), 3 also
	// with X25519 alone (Go's default key exchange, X25519MLKEM768, sends
	// a post-quantum key share of about 1.2 KB each way), 4 trustd's own
	// client (HTTPFetcher's default transport) trusting the test CA.
	notaryCase := func(name, cacheDir, gun string, tls int) {
		b.Run(name, func(b *testing.B) {
			repo, err := d.NotaryRepo(gun)
			if err != nil {
				b.Fatal(err)
			}
			srv := gen.Serve(gen.NewNotaryServer(repo))
			if tls > 0 {
				srv.Close()
				srv = gen.ServeTLS(gen.NewNotaryServer(repo))
			}
			defer srv.Close()
			tmp := b.TempDir()
			if err := gen.CopyDir(gen.SourceDir(cacheDir, "hub"), gen.SourceDir(tmp, "hub")); err != nil {
				b.Fatal(err)
			}
			ns, err := gen.NotarySource(tmp, "hub", srv.URL, ca)
			if err != nil {
				b.Fatal(err)
			}
			client := srv.Client()
			if tls == 4 {
				roots := client.Transport.(*http.Transport).TLSClientConfig.RootCAs
				client = &http.Client{Transport: cache.NewDefaultTransport(roots)}
			}
			if tls > 0 {
				ns.Fetcher = &cache.HTTPFetcher{Client: client}
			}
			if tls >= 2 {
				if tls < 4 {
					cfg := client.Transport.(*http.Transport).TLSClientConfig
					cfg.ClientSessionCache = cryptotls.NewLRUClientSessionCache(64)
					if tls == 3 {
						cfg.CurvePreferences = []cryptotls.CurveID{cryptotls.X25519}
					}
				}
				if _, err := ns.SyncRepo(ctx, gun, time.Now()); err != nil { // a first session
					b.Fatal(err)
				}
			}
			srv.Counter.Reset()
			ops := 0
			for b.Loop() {
				if tls > 0 {
					// The daemon refreshes every 5 minutes, after idle
					// connections have timed out (90 s): a new TLS
					// connection each time.
					client.CloseIdleConnections()
				}
				changed, err := ns.SyncRepo(ctx, gun, time.Now())
				if err != nil || changed {
					b.Fatalf("changed=%v err=%v", changed, err)
				}
				ops++
			}
			reportWire(b, srv.Counter, ops)
		})
	}
	notaryCase("notary-10-tags", d.ManyCacheDir(), gen.ManyGUN(0), 0)
	notaryCase("notary-10-tags/https-new-connection", d.ManyCacheDir(), gen.ManyGUN(0), 1)
	notaryCase("notary-10-tags/https-new-connection-resumed", d.ManyCacheDir(), gen.ManyGUN(0), 2)
	notaryCase("notary-10-tags/https-new-connection-resumed-x25519", d.ManyCacheDir(), gen.ManyGUN(0), 3)
	notaryCase("notary-10-tags/https-new-connection-resumed-default-client", d.ManyCacheDir(), gen.ManyGUN(0), 4)
	notaryCase("notary-100k-tags", d.CacheDir(), gen.BigGUN, 0)

	b.Run("tuf-100k-tags", func(b *testing.B) {
		srv := gen.Serve(gen.TUFServer(d.TUF.Dir))
		defer srv.Close()
		root, err := os.ReadFile(d.TUF.RootPath)
		if err != nil {
			b.Fatal(err)
		}
		cacheDir := copyCache(b, gen.SourceDir(d.CacheDir(), "corp"))
		src := &cache.TUFSource{Name: "corp", URL: srv.URL + "/metadata/", Root: root, Dir: cacheDir, Fetcher: &cache.HTTPFetcher{}}
		// One round first, as a daemon has done before any refresh: it
		// probes for a new root (the copied cache has no record of a
		// probe). What is measured is each round after it, within the
		// root-check interval.
		if _, err := src.Sync(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		srv.Counter.Reset()
		ops := 0
		for b.Loop() {
			res, err := src.Sync(ctx, time.Now())
			if err != nil || res.Changed {
				b.Fatalf("changed=%v err=%v", res != nil && res.Changed, err)
			}
			ops++
		}
		reportWire(b, srv.Counter, ops)
	})
}

// BenchmarkRefresh1000Notary syncs 1000 Notary repositories (10 tags
// each) from a loopback server, as one round of the background sync does
// with its bounded concurrency: "first" into an empty cache (every file
// fetched, verified and written), "unchanged" against a cache that holds
// them all (one timestamp request each).
func BenchmarkRefresh1000Notary(b *testing.B) {
	d := gen.BenchDataset(b)
	ctx := context.Background()
	repos, err := d.ManyRepos()
	if err != nil {
		b.Fatal(err)
	}
	ca, err := os.ReadFile(d.CAPath())
	if err != nil {
		b.Fatal(err)
	}
	srv := gen.Serve(gen.NewNotaryServer(repos...))
	defer srv.Close()
	guns := make([]string, len(repos))
	for i, r := range repos {
		guns[i] = r.GUN
	}
	run := func(b *testing.B, cacheDir func() string, wantChanged bool) {
		srv.Counter.Reset()
		ops := 0
		for b.Loop() {
			b.StopTimer()
			ns, err := gen.NotarySource(cacheDir(), "hub", srv.URL, ca)
			if err != nil {
				b.Fatal(err)
			}
			ns.Want(guns...)
			b.StartTimer()
			res, err := ns.Sync(ctx, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if res.Changed != wantChanged || !strings.HasPrefix(res.Summary, "1000 repositories") {
				b.Fatalf("changed=%v: %s", res.Changed, res.Summary)
			}
			ops++
		}
		reportWire(b, srv.Counter, ops)
	}
	b.Run("first", func(b *testing.B) {
		run(b, func() string { return filepath.Join(b.TempDir(), "cache") }, true)
	})
	b.Run("unchanged", func(b *testing.B) {
		dir := copyCache(b, d.ManyCacheDir())
		run(b, func() string { return dir }, false)
	})
}

// countingRegistry is a registry at the network edge that has nothing:
// it counts the requests trustd makes to fetch signed manifests after a
// sync, and their bytes (request line and headers), and answers 404.
type countingRegistry struct {
	requests, bytes atomic.Int64
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }

func (c *countingRegistry) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	_ = r.Write(countWriter{&c.bytes})
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// BenchmarkStoreSyncUnchanged is BenchmarkRefreshUnchanged one level up,
// as the daemon's sync loop calls it (Store.SyncSource): after the
// source's own sync it fetches every signed manifest it does not hold
// from the registries (here a fake that has none; registry-requests/op
// counts what it asked for).
func BenchmarkStoreSyncUnchanged(b *testing.B) {
	d := gen.BenchDataset(b)
	ctx := context.Background()
	srv := gen.Serve(gen.TUFServer(d.TUF.Dir))
	defer srv.Close()
	cacheDir := copyCache(b, d.CacheDir())
	path := filepath.Join(b.TempDir(), "policy.toml")
	o := d.PolicyOptions(cacheDir, filepath.Join(cacheDir, "no.sock"), gen.SourcesTUF)
	o.TUF.URL = srv.URL + "/metadata/"
	if err := gen.WritePolicy(path, o); err != nil {
		b.Fatal(err)
	}
	p, err := policy.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	reg := &countingRegistry{}
	store.Registry.Client = &http.Client{Transport: reg}
	src := store.Sources()[0]
	// The first round after start fetches the signed manifests (the
	// copied cache has no record of a fetch); what is measured is every
	// round after it.
	if _, _, err := store.SyncSource(ctx, src, time.Now()); err != nil {
		b.Fatal(err)
	}
	reg.requests.Store(0)
	reg.bytes.Store(0)
	srv.Counter.Reset()
	ops := 0
	for b.Loop() {
		res, _, err := store.SyncSource(ctx, src, time.Now())
		if err != nil || res.Changed {
			b.Fatalf("changed=%v err=%v", res != nil && res.Changed, err)
		}
		ops++
	}
	reportWire(b, srv.Counter, ops)
	b.ReportMetric(float64(reg.requests.Load())/float64(ops), "registry-requests/op")
	b.ReportMetric(float64(reg.bytes.Load())/float64(ops), "registry-B/op")
}
