package engine_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

var engineSnapshot struct {
	once sync.Once
	snap *engine.Snapshot
	err  error
}

// loadSnapshot loads the data set's policy and whole index (200k signed
// tags, 10k cosign-signed digests) as the daemon does.
func loadSnapshot(b *testing.B, d *gen.Dataset) *engine.Snapshot {
	b.Helper()
	engineSnapshot.once.Do(func() {
		path := filepath.Join(b.TempDir(), "policy.toml")
		if engineSnapshot.err = gen.WritePolicy(path, d.PolicyOptions(d.CacheDir(), filepath.Join(d.Dir, "no.sock"), gen.SourcesAll)); engineSnapshot.err != nil {
			return
		}
		p, err := policy.Load(path)
		if err != nil {
			engineSnapshot.err = err
			return
		}
		store, err := cache.Open(p, nil)
		if err != nil {
			engineSnapshot.err = err
			return
		}
		ix, errs := store.LoadIndex()
		if len(errs) > 0 {
			engineSnapshot.err = errs[0]
			return
		}
		engineSnapshot.snap = &engine.Snapshot{Policy: p, Index: ix}
	})
	if engineSnapshot.err != nil {
		b.Fatal(engineSnapshot.err)
	}
	return engineSnapshot.snap
}

// BenchmarkEngineDecide measures plugin.Engine.Decide, the decision the
// NRI plugin and the control socket make: the snapshot load, verify.Decide,
// the content lookups a denial triggers, and the JSON log line of every
// decision (to io.Discard; "nolog" without it). It reports p50, p99 and
// p99.9 latencies of the loop's calls (each timed with two time.Now
// calls, about 50 ns).
func BenchmarkEngineDecide(b *testing.B) {
	d := gen.BenchDataset(b)
	snap := loadSnapshot(b, d)
	cases := gen.DecideCases(d.Options)
	// Containers on containerd 2.2/2.3 (no image digest from NRI): only the
	// config digest is known; the signed manifest's content (in trustd's
	// manifest cache here) maps the signed digest to it, memoised.
	mc := &cache.ManifestCache{Dir: b.TempDir()}
	empty := &cache.ManifestCache{Dir: b.TempDir()} // for the other cases
	cases = append(cases, gen.DecideCase{Name: "container-config-only/tuf", Allowed: true, Reason: "image config", Facts: func(rng *rand.Rand) verify.Facts {
		repo, tag := gen.RepoName(gen.DefaultRegistry, rng.IntN(d.Options.Repos)), gen.Tag(rng.IntN(d.Options.TagsPerRepo))
		if err := mc.Put(gen.ManifestDigest(repo, tag), gen.Manifest(repo, tag)); err != nil {
			b.Fatal(err)
		}
		return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default", ConfigDigest: gen.ConfigDigest(repo, tag)}
	}})
	// The same for a cosign-signed image: its signed digest is found
	// among the repository's signed digests by their content (the
	// others' manifests are not on the node).
	// A manifest put on the node is announced to the resolver, as the
	// image event of a pull is (it forgets the digests it missed).
	var resolver *engine.Resolver
	if o := d.Options; o.SigstoreRepos > 0 {
		cases = append(cases, gen.DecideCase{Name: "container-config-only/sigstore", Allowed: true, Reason: "image config", Facts: func(rng *rand.Rand) verify.Facts {
			repo, tag := gen.SigstoreRepo(rng.IntN(o.SigstoreRepos)), gen.Tag(rng.IntN(o.SigstoreDigests))
			if err := mc.Put(gen.ManifestDigest(repo, tag), gen.Manifest(repo, tag)); err != nil {
				b.Fatal(err)
			}
			resolver.ContentAdded()
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default", ConfigDigest: gen.ConfigDigest(repo, tag)}
		}})
	}
	for _, log := range []string{"log", "nolog"} {
		for _, c := range cases {
			if c.Name == "pull-digest-only/notary-100k" {
				continue // milliseconds: see BenchmarkDecide
			}
			b.Run(log+"/"+c.Name, func(b *testing.B) {
				var rd engine.BlobReader = empty
				if strings.HasPrefix(c.Name, "container-config-only/") {
					rd = mc
				}
				resolver = &engine.Resolver{Readers: []engine.BlobReader{rd}}
				e := &engine.Engine{Resolver: resolver, Now: time.Now}
				if log == "log" {
					e.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
				}
				e.Swap(snap)
				ctx := context.Background()
				pc := engine.Context{Pod: "web-7d9c", Container: "app", Via: engine.ViaNRI}
				facts := gen.Samples(b, c, 2048, func(f verify.Facts) verify.Decision { return e.Decide(ctx, f, pc) })
				lat := gen.NewLatencies(1 << 20)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					f := facts[i%len(facts)]
					start := time.Now()
					dec := e.Decide(ctx, f, pc)
					lat.Add(time.Since(start))
					if dec.Allowed != c.Allowed {
						b.Fatal(dec.Reason)
					}
					i++
				}
				lat.Report(b)
			})
		}
	}
}
