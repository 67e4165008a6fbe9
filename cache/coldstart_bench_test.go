package cache_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
)

// coldStartCase is one cache to start from.
type coldStartCase struct {
	name     string
	cacheDir func(*gen.Dataset) string
	sources  gen.Sources
}

var coldStartCases = []coldStartCase{
	// 100k targets over 10k repositories, 256 succinct hash bins.
	{"tuf-100k", (*gen.Dataset).CacheDir, gen.SourcesTUF},
	// One Notary repository of 100k tags: a targets.json of about 9 MB.
	{"notary-100k", (*gen.Dataset).CacheDir, gen.SourcesNotary},
	// 1000 Notary repositories of 10 tags.
	{"notary-1000-repos", (*gen.Dataset).ManyCacheDir, gen.SourcesNotary},
	// Both sources of the first two: 200k tags.
	{"all-200k", (*gen.Dataset).CacheDir, gen.SourcesTUFNotary},
	// 10,000 cosign-signed digests over 1000 repositories: 10,900 keyed
	// signatures (ECDSA P-256), each verified again.
	{"sigstore-10k", (*gen.Dataset).CacheDir, gen.SourcesSigstore},
}

func coldStartPolicy(b *testing.B, d *gen.Dataset, c coldStartCase) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "policy.toml")
	if err := gen.WritePolicy(path, d.PolicyOptions(c.cacheDir(d), filepath.Join(d.Dir, "no.sock"), c.sources)); err != nil {
		b.Fatal(err)
	}
	return path
}

// loadLikeRun is what `trustd run` does before it connects to containerd
// and NRI: load and validate the policy, open the cache and verify every
// source's cached data offline into the index.
func loadLikeRun(path string) (int, error) {
	p, err := policy.Load(path)
	if err != nil {
		return 0, err
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		return 0, err
	}
	ix, errs := store.LoadIndex()
	if len(errs) > 0 {
		return 0, errs[0]
	}
	tags := 0
	for _, si := range ix.Sources {
		tags += si.NumTags()
	}
	runtime.KeepAlive(ix)
	return tags, nil
}

// BenchmarkColdStart measures the start of `trustd run` up to the point
// where it would connect to containerd: policy.Load, cache.Open and
// Store.LoadIndex (every cached source verified offline). Besides time and
// allocations per load it reports, from a fresh process that does one
// load (this test binary run as TestColdStartChild), the wall time
// (child-ms), its CPU time (child-cpu-ms: user + system, all threads, the
// garbage collector's included; less sensitive to a busy machine than the
// wall time) and the peak resident set size (peak-rss-MiB, VmHWM, which
// includes the test binary's own few MiB) — median of 3 runs — and the
// heap that the loaded index keeps live (live-heap-MiB).
func BenchmarkColdStart(b *testing.B) {
	d := gen.BenchDataset(b)
	for _, c := range coldStartCases {
		b.Run(c.name, func(b *testing.B) {
			path := coldStartPolicy(b, d, c)
			var tags int
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if tags, err = loadLikeRun(path); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(tags), "tags")

			var runs []childResult
			for range 3 {
				r, err := runColdStartChild(path)
				if err != nil {
					b.Fatal(err)
				}
				runs = append(runs, r)
			}
			slices.SortFunc(runs, func(x, y childResult) int { return int(x.Took - y.Took) })
			med := runs[1]
			gen.ReportMS(b, med.Took, "child-ms")
			gen.ReportMS(b, med.CPU, "child-cpu-ms")
			slices.SortFunc(runs, func(x, y childResult) int { return int(x.HWM - y.HWM) })
			b.ReportMetric(float64(runs[1].HWM)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(runs[1].Live)/(1<<20), "live-heap-MiB")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childResult is what TestColdStartChild prints.
type childResult struct {
	Took time.Duration `json:"took"`
	CPU  time.Duration `json:"cpu"`
	HWM  int64         `json:"hwm"`
	Live int64         `json:"live"`
	Tags int           `json:"tags"`
}

func runColdStartChild(policyPath string) (childResult, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestColdStartChild$", "-test.count=1", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), "TRUSTD_COLDSTART_POLICY="+policyPath)
	out, err := cmd.Output()
	if err != nil {
		return childResult{}, fmt.Errorf("cold start child: %w\n%s", err, out)
	}
	var r childResult
	for _, line := range splitLines(out) {
		if json.Unmarshal(line, &r) == nil && r.Tags > 0 {
			return r, nil
		}
	}
	return r, fmt.Errorf("cold start child printed no result:\n%s", out)
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := slices.Index(b, '\n')
		if i < 0 {
			return append(out, b)
		}
		out, b = append(out, b[:i]), b[i+1:]
	}
	return out
}

// TestColdStartChild is BenchmarkColdStart's fresh process: with
// TRUSTD_COLDSTART_POLICY set it loads once and prints the time, VmHWM and
// the live heap as JSON; otherwise it is skipped.
func TestColdStartChild(t *testing.T) {
	path := os.Getenv("TRUSTD_COLDSTART_POLICY")
	if path == "" {
		t.Skip("run by BenchmarkColdStart")
	}
	cpu0 := cpuTime()
	start := time.Now()
	tags, err := loadLikeRun(path)
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := gen.VmHWM("self")
	if err != nil {
		t.Fatal(err)
	}
	// The index is garbage now; load again and keep it to measure what it
	// keeps live.
	p, _ := policy.Load(path)
	store, _ := cache.Open(p, nil)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ix, _ := store.LoadIndex()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ix)
	b, _ := json.Marshal(childResult{Took: took, CPU: cpu, HWM: hwm, Live: int64(after.HeapAlloc) - int64(before.HeapAlloc), Tags: tags})
	fmt.Printf("%s\n", b)
}
