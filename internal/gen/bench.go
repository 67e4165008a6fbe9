package gen

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/verify"
)

// BenchDataDir is where benchmarks find the data set: $TRUSTD_BENCH_DATA,
// else trustd-bench/data in the user's cache directory (like the
// end-to-end tools in ~/.cache/trustd-e2e), so that it is generated once
// and reused by every benchmark package and run for a week.
func BenchDataDir() (string, error) {
	if d := os.Getenv("TRUSTD_BENCH_DATA"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "trustd-bench", "data"), nil
}

var benchData = sync.OnceValues(func() (*Dataset, error) {
	dir, err := BenchDataDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	// Benchmark binaries of several packages may start at once: one
	// generates, the others wait and reuse.
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	return OpenDataset(dir, DefaultDatasetOptions())
})

// BenchDataset returns the issue 7 data set (see BenchDataDir), generating
// it on first use (about a minute).
func BenchDataset(tb testing.TB) *Dataset {
	tb.Helper()
	d, err := benchData()
	if err != nil {
		tb.Fatalf("benchmark data set: %v", err)
	}
	return d
}

// Latencies records the duration of each operation of a benchmark loop in
// a buffer allocated up front (the recording itself does not allocate),
// keeping the last len(buf) samples, and reports percentiles.
type Latencies struct {
	buf []time.Duration
	n   int
}

// NewLatencies records up to size samples.
func NewLatencies(size int) *Latencies { return &Latencies{buf: make([]time.Duration, size)} }

// Add records one sample.
func (l *Latencies) Add(d time.Duration) {
	l.buf[l.n%len(l.buf)] = d
	l.n++
}

// Percentile returns the p-th percentile (0 < p <= 100) of the samples.
func (l *Latencies) Percentile(p float64) time.Duration {
	s := l.sorted()
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l *Latencies) sorted() []time.Duration {
	s := slices.Clone(l.buf[:min(l.n, len(l.buf))])
	slices.Sort(s)
	return s
}

// Report reports p50, p99 and p99.9 in nanoseconds (metrics p50-ns,
// p99-ns, p99.9-ns).
func (l *Latencies) Report(b *testing.B) {
	if l.n == 0 {
		return
	}
	for _, p := range []float64{50, 99, 99.9} {
		b.ReportMetric(float64(l.Percentile(p).Nanoseconds()), fmt.Sprintf("p%g-ns", p))
	}
}

// ReportMS reports a duration in milliseconds under unit.
func ReportMS(b *testing.B, d time.Duration, unit string) {
	b.ReportMetric(float64(d.Microseconds())/1000, unit)
}

// VmHWM returns a process's peak resident set size in bytes, from
// /proc/<pid>/status ("self" for this process).
func VmHWM(pid string) (int64, error) {
	return procStatus(pid, "VmHWM:")
}

// VmRSS returns a process's current resident set size in bytes.
func VmRSS(pid string) (int64, error) {
	return procStatus(pid, "VmRSS:")
}

func procStatus(pid, field string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if n, _ := fmt.Sscanf(line, field+" %d kB", &kb); n == 1 {
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%s/status: no %s", pid, field)
}

// DecideCase is one kind of request, with the verdict it must get.
type DecideCase struct {
	Name    string
	Allowed bool
	// Reason is a fragment the reason must contain.
	Reason string
	Facts  func(rng *rand.Rand) verify.Facts
}

// DecideCases are the requests the decision benchmarks replay: what NRI
// (container creation) and the image verifier (pulls) ask, allowed and
// denied, over random repositories of the data set (with
// SigstoreDecideCases when it has cosign signatures).
func DecideCases(o DatasetOptions) []DecideCase {
	reg := DefaultRegistry
	tuf := func(rng *rand.Rand) (string, string) {
		return RepoName(reg, rng.IntN(o.Repos)), Tag(rng.IntN(o.TagsPerRepo))
	}
	big := func(rng *rand.Rand) string { return NotaryTagName(o.NotaryTags, rng.IntN(o.NotaryTags)) }
	cases := []DecideCase{
		{"container-tag/tuf", true, "image digest matches", func(rng *rand.Rand) verify.Facts {
			repo, tag := tuf(rng)
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default",
				Digest: ManifestDigest(repo, tag), ConfigDigest: ConfigDigest(repo, tag)}
		}},
		{"container-tag/notary-100k", true, "image digest matches", func(rng *rand.Rand) verify.Facts {
			tag := big(rng)
			return verify.Facts{Subject: verify.SubjectContainer, Image: BigGUN + ":" + tag, Namespace: "default",
				Digest: ManifestDigest(BigGUN, tag), ConfigDigest: ConfigDigest(BigGUN, tag)}
		}},
		{"pull-tag/tuf", true, "digest matches", func(rng *rand.Rand) verify.Facts {
			repo, tag := tuf(rng)
			return verify.Facts{Subject: verify.SubjectPull, Image: repo + ":" + tag, Digest: ManifestDigest(repo, tag)}
		}},
		{"pull-digest-only/tuf", true, "digest matches", func(rng *rand.Rand) verify.Facts {
			repo, tag := tuf(rng)
			d := ManifestDigest(repo, tag)
			return verify.Facts{Subject: verify.SubjectPull, Image: repo + "@" + string(d), Digest: d}
		}},
		{"container-denied-unsigned-tag/tuf", false, "is not signed", func(rng *rand.Rand) verify.Facts {
			repo, _ := tuf(rng)
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":unsigned", Namespace: "default",
				Digest: digest.FromString("x"), ConfigDigest: digest.FromString("y")}
		}},
		{"container-denied-config-unknown/tuf", false, "cannot be matched", func(rng *rand.Rand) verify.Facts {
			repo, tag := tuf(rng)
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default",
				Digest: digest.FromString("side-loaded " + repo), ConfigDigest: digest.FromString("other config")}
		}},
		{"container-denied-no-rule", false, "the rule denies", func(rng *rand.Rand) verify.Facts {
			return verify.Facts{Subject: verify.SubjectContainer, Image: "quay.io/team/app" + string(rune('a'+rng.IntN(26))) + ":1.0", Namespace: "default",
				Digest: digest.FromString("q"), ConfigDigest: digest.FromString("c")}
		}},
		{"pull-digest-only/notary-100k", true, "digest matches", func(rng *rand.Rand) verify.Facts {
			tag := big(rng)
			d := ManifestDigest(BigGUN, tag)
			return verify.Facts{Subject: verify.SubjectPull, Image: BigGUN + "@" + string(d), Digest: d}
		}},
	}
	if o.SigstoreRepos > 0 && o.SigstoreCriticalRepos > 0 && o.SigstoreDigests > 1 {
		cases = append(cases, SigstoreDecideCases(o)...)
	}
	return cases
}

// SigstoreDecideCases are the decisions on cosign-signed digests (source
// "cosign"): judged by digest from the verified signatures in the index,
// without cryptography.
func SigstoreDecideCases(o DatasetOptions) []DecideCase {
	// A signed digest of a one-key repository, and its tag.
	signed := func(rng *rand.Rand) (string, string, digest.Digest) {
		repo, j := SigstoreRepo(rng.IntN(o.SigstoreRepos)), rng.IntN(o.SigstoreDigests)
		return repo, Tag(j), SigstoreDigest(repo, j)
	}
	// A digest of a threshold-2 repository signed by both keys (all but
	// the last), or by the first alone (the last).
	critical := func(rng *rand.Rand, both bool) (string, string, digest.Digest) {
		repo, j := SigstoreCriticalRepo(rng.IntN(o.SigstoreCriticalRepos)), o.SigstoreDigests-1
		if both {
			j = rng.IntN(o.SigstoreDigests - 1)
		}
		return repo, Tag(j), SigstoreDigest(repo, j)
	}
	pull := func(image string, d digest.Digest) verify.Facts {
		return verify.Facts{Subject: verify.SubjectPull, Image: image, Digest: d}
	}
	return []DecideCase{
		{"container-tag/sigstore", true, "is signed by key ", func(rng *rand.Rand) verify.Facts {
			repo, tag, d := signed(rng)
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default",
				Digest: d, ConfigDigest: ConfigDigest(repo, tag)}
		}},
		// NRI without the image digest (containerd 2.2/2.3): the config
		// digest, which the signed manifest's content (already resolved,
		// as the engine's resolver gives it) covers.
		{"container-config-covered/sigstore", true, "is signed by key ", func(rng *rand.Rand) verify.Facts {
			repo, tag, d := signed(rng)
			cfg := ConfigDigest(repo, tag)
			return verify.Facts{Subject: verify.SubjectContainer, Image: repo + ":" + tag, Namespace: "default",
				ConfigDigest: cfg, Covers: map[digest.Digest][]digest.Digest{d: {d, cfg}}}
		}},
		{"pull-tag/sigstore", true, "is signed by key ", func(rng *rand.Rand) verify.Facts {
			repo, tag, d := signed(rng)
			return pull(repo+":"+tag, d)
		}},
		{"pull-digest-only/sigstore", true, "is signed by key ", func(rng *rand.Rand) verify.Facts {
			repo, _, d := signed(rng)
			return pull(repo+"@"+string(d), d)
		}},
		{"pull-threshold-2/sigstore", true, "is signed by keys ", func(rng *rand.Rand) verify.Facts {
			repo, tag, d := critical(rng, true)
			return pull(repo+":"+tag, d)
		}},
		{"pull-denied-unsigned/sigstore", false, "is not signed by key ", func(rng *rand.Rand) verify.Facts {
			repo, _, _ := signed(rng)
			d := digest.FromString("unsigned " + repo)
			return pull(repo+"@"+string(d), d)
		}},
		{"pull-denied-below-threshold/sigstore", false, "is not signed by 2 of the keys", func(rng *rand.Rand) verify.Facts {
			repo, tag, d := critical(rng, false)
			return pull(repo+":"+tag, d)
		}},
	}
}

// Samples pre-computes n facts of a case (so that building them is not
// timed), checking the verdict of each with check.
func Samples(b *testing.B, c DecideCase, n int, check func(verify.Facts) verify.Decision) []verify.Facts {
	b.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(len(c.Name))))
	out := make([]verify.Facts, n)
	for i := range out {
		out[i] = c.Facts(rng)
		if i < 64 {
			d := check(out[i])
			if d.Allowed != c.Allowed || !strings.Contains(d.Reason, c.Reason) {
				b.Fatalf("%s: %s: allowed=%v %q, want allowed=%v and %q", c.Name, out[i].Image, d.Allowed, d.Reason, c.Allowed, c.Reason)
			}
		}
	}
	return out
}
