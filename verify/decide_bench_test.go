package verify_test

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// benchSnapshot is the generated data set's 52-rule policy and its whole
// index (100k tags over 10k repositories from a TUF repository with
// succinct hash bins, one Notary repository of 100k tags, and 10k
// cosign-signed digests over 1000 repositories, their signatures verified
// by the load), loaded as the daemon loads them.
var benchSnapshot struct {
	once sync.Once
	p    *policy.Policy
	ix   *verify.Index
	err  error
}

func loadBenchSnapshot(b *testing.B) (*policy.Policy, *verify.Index) {
	b.Helper()
	d := gen.BenchDataset(b)
	benchSnapshot.once.Do(func() {
		path := filepath.Join(b.TempDir(), "policy.toml")
		if benchSnapshot.err = gen.WritePolicy(path, d.PolicyOptions(d.CacheDir(), filepath.Join(d.Dir, "no.sock"), gen.SourcesAll)); benchSnapshot.err != nil {
			return
		}
		if benchSnapshot.p, benchSnapshot.err = policy.Load(path); benchSnapshot.err != nil {
			return
		}
		store, err := cache.Open(benchSnapshot.p, nil)
		if err != nil {
			benchSnapshot.err = err
			return
		}
		ix, errs := store.LoadIndex()
		if len(errs) > 0 {
			benchSnapshot.err = errs[0]
			return
		}
		benchSnapshot.ix = ix
	})
	if benchSnapshot.err != nil {
		b.Fatal(benchSnapshot.err)
	}
	return benchSnapshot.p, benchSnapshot.ix
}

// BenchmarkDecide measures verify.Decide alone — policy match (52 rules),
// reference parsing, index lookup and the verdict with its reason — with
// the generated data set loaded (200k signed tags, 10k cosign-signed
// digests: no cryptography at decision time), and reports the p50,
// p99 and p99.9 latency of the loop's calls (each timed with two
// time.Now calls, which add about 50 ns).
func BenchmarkDecide(b *testing.B) {
	p, ix := loadBenchSnapshot(b)
	now := time.Now()
	cases := gen.DecideCases(gen.BenchDataset(b).Options)
	// The first case again with the garbage collector off: the difference
	// in the tail is what collecting a heap that holds the whole index
	// costs the decisions that allocate.
	gcOff := cases[0]
	gcOff.Name += "/gc-off"
	cases = append(cases, gcOff)
	for _, c := range cases {
		b.Run(c.Name, func(b *testing.B) {
			if strings.HasSuffix(c.Name, "/gc-off") {
				runtime.GC()
				defer debug.SetGCPercent(debug.SetGCPercent(-1))
			}
			n := 4096
			if strings.Contains(c.Name, "notary-100k") && strings.Contains(c.Name, "digest-only") {
				n = 64
			}
			facts := gen.Samples(b, c, n, func(f verify.Facts) verify.Decision { return verify.Decide(p, ix, f, now) })
			lat := gen.NewLatencies(1 << 20)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f := facts[i%len(facts)]
				start := time.Now()
				d := verify.Decide(p, ix, f, now)
				lat.Add(time.Since(start))
				if d.Allowed != c.Allowed {
					b.Fatal(d.Reason)
				}
				i++
			}
			lat.Report(b)
		})
	}
}

// Typed sinks: storing a struct in an interface would allocate.
var (
	sinkTarget verify.Target
	sinkTag    verify.TagView
)

// BenchmarkDecideParts times the steps of one decision for a container by
// tag separately, to show where BenchmarkDecide's time goes: parsing the
// reference, mirror rewriting and rule matching (52 rules), the rules a
// pull considers, the index lookups (source, repository, tag and its first
// signature; the tag alone), and the strings of the verdict.
func BenchmarkDecideParts(b *testing.B) {
	p, ix := loadBenchSnapshot(b)
	o := gen.BenchDataset(b).Options
	repo, tag := gen.RepoName(gen.DefaultRegistry, 4242), gen.Tag(3)
	image := repo + ":" + tag
	ref, err := policy.ParseRef(image)
	if err != nil {
		b.Fatal(err)
	}
	rule := p.Match(repo, "default")
	si := ix.Source(rule.Source)
	rt, ok := si.Lookup(repo)
	if !ok || o.Repos == 0 {
		b.Fatal("no trust data")
	}
	// Typed sinks: storing a result in an interface would allocate, and
	// that would be counted against the step.
	var (
		refSink    policy.Ref
		ruleSink   *policy.Rule
		rulesSink  []*policy.Rule
		stringSink string
	)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"ParseRef", func() { refSink, _ = policy.ParseRef(image) }},
		{"Origin+Match", func() { ruleSink = p.Match(p.Origin(repo), "default") }},
		{"Candidates", func() { rulesSink = p.Candidates(repo) }},
		{"index-lookup", func() {
			rv, _ := ix.Source(rule.Source).Lookup(repo)
			tv, _ := rv.Tag(tag)
			_, sinkTarget = tv.Sig(0)
		}},
		{"tag-lookup", func() { sinkTag, _ = rt.Tag(tag) }},
		{"Ref.String", func() { stringSink = ref.String() }},
		{"Rule.String", func() { stringSink = rule.String() }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f()
			}
		})
	}
	_, _, _, _ = refSink, ruleSink, rulesSink, stringSink
}
