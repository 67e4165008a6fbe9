// Command benchreport turns the output of scripts/bench.sh's benchmark
// runs into BENCHMARKS.md: one row per figure of issue 7 with its goal,
// the measured median, pass or miss, and the command that measured it,
// then the machine and every raw result.
//
//	benchreport -o BENCHMARKS.md RESULTS.txt...
//
// Each results file is `go test -bench` output; lines "# cmd: ..." name
// the command, "# load: ..." the load average when it ran.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is every value of one metric of one benchmark, across -count.
type result struct {
	values []float64
	run    string // the results file it came from
}

func (r *result) median() float64 {
	s := slices.Clone(r.values)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// results maps "Benchmark/name metric" to its values.
type results map[string]*result

func key(bench, metric string) string { return bench + " " + metric }

// parse reads go test -bench output.
func parse(path string, rs results, raw *strings.Builder, loads *[]float64, cmds map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	run := strings.TrimSuffix(filepath.Base(path), ".txt")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "# cmd: "); ok {
			cmds[run] = c
			fmt.Fprintf(raw, "\n[%s] $ %s\n", run, c)
			continue
		}
		if l, ok := strings.CutPrefix(line, "# load: "); ok {
			if v, err := strconv.ParseFloat(strings.Fields(l)[0], 64); err == nil {
				*loads = append(*loads, v)
			}
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			if strings.HasPrefix(line, "--- SKIP") || strings.HasPrefix(line, "--- FAIL") || strings.Contains(line, "FAIL") {
				raw.WriteString(line + "\n")
			}
			continue
		}
		raw.WriteString(line + "\n")
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			k := key(name, fields[i+1])
			if rs[k] == nil {
				rs[k] = &result{run: run}
			}
			rs[k].values = append(rs[k].values, v)
		}
	}
	return sc.Err()
}

// figure is one row of the table.
type figure struct {
	section, what string
	bench, metric string
	// goal: the value must be <= max (or >= min when min is set); no goal
	// when both are zero.
	max, min float64
	unit     string
	scale    float64 // displayed value = metric * scale
	note     string
	// minus, when set, is another benchmark whose median of the same
	// metric is subtracted (a cost added by trustd in the same run).
	minus string
}

var figures = []figure{
	{section: "Decision in process (52 rules, 200k signed tags: TUF 100k/10k repositories + Notary 100k, and 10k cosign-signed digests over 1000 repositories)"},
	{what: "verify.Decide p99, container by tag (TUF)", bench: "BenchmarkDecide/container-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p50, container by tag (TUF)", bench: "BenchmarkDecide/container-tag/tuf", metric: "p50-ns", unit: "µs", scale: 1e-3},
	{what: "verify.Decide allocations, container by tag (TUF)", bench: "BenchmarkDecide/container-tag/tuf", metric: "allocs/op", max: 0, unit: "allocs/op", scale: 1, note: "goal: zero where possible; the one left is the decision's reason text"},
	{what: "verify.Decide p99, container by tag (Notary, 100k tags)", bench: "BenchmarkDecide/container-tag/notary-100k", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, pull by tag + digest (TUF)", bench: "BenchmarkDecide/pull-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, pull by digest only (TUF)", bench: "BenchmarkDecide/pull-digest-only/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, denied (unsigned tag)", bench: "BenchmarkDecide/container-denied-unsigned-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, container by tag (TUF), garbage collector off", bench: "BenchmarkDecide/container-tag/tuf/gc-off", metric: "p99-ns", unit: "µs", scale: 1e-3, note: "compare with the row above: the share of the tail that collecting the index's heap causes"},
	{what: "verify.Decide, pull by digest only of the 100k-tag Notary repository", bench: "BenchmarkDecide/pull-digest-only/notary-100k", metric: "ns/op", unit: "µs", scale: 1e-3, note: "through the compact index's digest index; before it, every tag was sorted and checked: 84 ms"},
	{what: "verify.Decide p99, container by tag + digest (sigstore)", bench: "BenchmarkDecide/container-tag/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3, note: "cosign signs digests: the signatures were verified when cached; a decision looks the digest up among them"},
	{what: "verify.Decide p99, container by config digest covered by a signed digest (sigstore)", bench: "BenchmarkDecide/container-config-covered/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3, note: "the signed manifest's content already resolved, as the engine passes it"},
	{what: "verify.Decide p99, pull by tag + digest (sigstore)", bench: "BenchmarkDecide/pull-tag/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, pull by digest (sigstore)", bench: "BenchmarkDecide/pull-digest-only/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p50, pull by digest (sigstore)", bench: "BenchmarkDecide/pull-digest-only/sigstore", metric: "p50-ns", unit: "µs", scale: 1e-3},
	{what: "verify.Decide allocations, pull by digest (sigstore)", bench: "BenchmarkDecide/pull-digest-only/sigstore", metric: "allocs/op", unit: "allocs/op", scale: 1},
	{what: "verify.Decide p99, pull, 2 of 2 keys required (sigstore)", bench: "BenchmarkDecide/pull-threshold-2/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, denied: unsigned digest (sigstore)", bench: "BenchmarkDecide/pull-denied-unsigned/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "verify.Decide p99, denied: 1 of the 2 keys required (sigstore)", bench: "BenchmarkDecide/pull-denied-below-threshold/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with its JSON log line), container by tag (TUF)", bench: "BenchmarkEngineDecide/log/container-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p50 (with log), container by tag (TUF)", bench: "BenchmarkEngineDecide/log/container-tag/tuf", metric: "p50-ns", unit: "µs", scale: 1e-3},
	{what: "Engine.Decide allocations (with log), container by tag (TUF)", bench: "BenchmarkEngineDecide/log/container-tag/tuf", metric: "allocs/op", max: 0, unit: "allocs/op", scale: 1, note: "goal: zero where possible"},
	{what: "Engine.Decide p99 (no log), container by tag (TUF)", bench: "BenchmarkEngineDecide/nolog/container-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), pull by tag + digest (TUF)", bench: "BenchmarkEngineDecide/log/pull-tag/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), container by config digest only (containerd 2.2/2.3)", bench: "BenchmarkEngineDecide/log/container-config-only/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), denied: config not matched (content lookups)", bench: "BenchmarkEngineDecide/log/container-denied-config-unknown/tuf", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), pull by digest (sigstore)", bench: "BenchmarkEngineDecide/log/pull-digest-only/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), container by tag + digest (sigstore)", bench: "BenchmarkEngineDecide/log/container-tag/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3},
	{what: "Engine.Decide p99 (with log), container by config digest only (sigstore)", bench: "BenchmarkEngineDecide/log/container-config-only/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3, note: "the tag binds nothing: the content of each of the repository’s 10 signed digests is asked for; the image’s manifest is on the node (memoised), the others are not: a miss is remembered until content may have arrived (an image event, a sync) or for 5 s"},
	{what: "Engine.Decide p99 (with log), denied: unsigned digest (sigstore; content lookups)", bench: "BenchmarkEngineDecide/log/pull-denied-unsigned/sigstore", metric: "p99-ns", max: 10, unit: "µs", scale: 1e-3, note: "content lookups of the repository's 10 signed digests, none on the node (misses remembered, as above)"},

	{what: "  step: policy.ParseRef", bench: "BenchmarkDecideParts/ParseRef", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: Origin + Match (52 rules)", bench: "BenchmarkDecideParts/Origin+Match", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: Candidates (pulls)", bench: "BenchmarkDecideParts/Candidates", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: index lookups (source, repository, tag, its first signature)", bench: "BenchmarkDecideParts/index-lookup", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: the tag's lookup alone (binary search in the compact index)", bench: "BenchmarkDecideParts/tag-lookup", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: Ref.String", bench: "BenchmarkDecideParts/Ref.String", metric: "ns/op", unit: "ns", scale: 1},
	{what: "  step: Rule.String", bench: "BenchmarkDecideParts/Rule.String", metric: "ns/op", unit: "ns", scale: 1},

	{section: "Pull gate: trustd-verifier exec (100k tags cached)"},
	{what: "added per pull, daemon running (trustd-verifier − /bin/true)", bench: "BenchmarkVerifierExec/daemon/tuf-100k", metric: "added-ms", max: 5, unit: "ms", scale: 1},
	{what: "  /bin/true exec, same run", bench: "BenchmarkVerifierExec/daemon/tuf-100k", metric: "true-ms", unit: "ms", scale: 1},
	{what: "  trustd-verifier CPU time, same run", bench: "BenchmarkVerifierExec/daemon/tuf-100k", metric: "verifier-cpu-ms", unit: "ms", scale: 1},
	{what: "  the trustd binary as trustd-verifier (the former symlink), added, same run", bench: "BenchmarkVerifierExec/daemon/tuf-100k", metric: "link-added-ms", unit: "ms", scale: 1},
	{what: "  `trustd help` exec (binary start-up alone), same run", bench: "BenchmarkVerifierExec/daemon/tuf-100k", metric: "trustd-help-ms", unit: "ms", scale: 1},
	{what: "  policy.Parse of the 52-rule policy (the trustd binary does it per pull; the daemon once per policy file)", bench: "BenchmarkParseGenerated", metric: "ns/op", unit: "ms", scale: 1e-6},
	{what: "added per pull, no daemon (trustd-verifier execs trustd: cache load), TUF 100k", bench: "BenchmarkVerifierExec/no-daemon/tuf-100k", metric: "added-ms", unit: "ms", scale: 1, note: "the fallback while the daemon is down: a cold start per pull"},
	{what: "added per pull, no daemon (trustd-verifier execs trustd: cache load), Notary 100k", bench: "BenchmarkVerifierExec/no-daemon/notary-100k", metric: "added-ms", unit: "ms", scale: 1, note: "the fallback while the daemon is down: a cold start per pull"},
	{what: "  verifier peak RSS, no daemon, Notary 100k", bench: "BenchmarkVerifierExec/no-daemon/notary-100k", metric: "verifier-maxrss-MiB", unit: "MiB", scale: 1},

	{section: "Cold start to READY (policy + cache.Open + LoadIndex; no containerd)"},
	{what: "TUF, 100k targets in 256 succinct hash bins: time (fresh process)", bench: "BenchmarkColdStart/tuf-100k", metric: "child-ms", max: 300, unit: "ms", scale: 1},
	{what: "TUF 100k: CPU time (fresh process)", bench: "BenchmarkColdStart/tuf-100k", metric: "child-cpu-ms", max: 300, unit: "ms", scale: 1},
	{what: "TUF 100k: peak RSS (VmHWM, fresh process)", bench: "BenchmarkColdStart/tuf-100k", metric: "peak-rss-MiB", max: 64, unit: "MiB", scale: 1},
	{what: "TUF 100k: heap kept live by the index", bench: "BenchmarkColdStart/tuf-100k", metric: "live-heap-MiB", unit: "MiB", scale: 1},
	{what: "Notary, 100k tags (targets.json 9 MB): time (fresh process)", bench: "BenchmarkColdStart/notary-100k", metric: "child-ms", max: 300, unit: "ms", scale: 1},
	{what: "Notary 100k: CPU time (fresh process)", bench: "BenchmarkColdStart/notary-100k", metric: "child-cpu-ms", max: 300, unit: "ms", scale: 1},
	{what: "Notary 100k: peak RSS (VmHWM, fresh process)", bench: "BenchmarkColdStart/notary-100k", metric: "peak-rss-MiB", max: 64, unit: "MiB", scale: 1},
	{what: "Notary 100k: heap kept live by the index", bench: "BenchmarkColdStart/notary-100k", metric: "live-heap-MiB", unit: "MiB", scale: 1},
	{what: "Notary 100k: notary.Verify alone (reference: naive ≈ 850 ms)", bench: "BenchmarkVerifyGenerated100k", metric: "ns/op", unit: "ms", scale: 1e-6},
	{what: "`trustd run` exec → control socket listening, TUF 100k", bench: "BenchmarkDaemonStart/tuf-100k", metric: "listen-ms", max: 300, unit: "ms", scale: 1},
	{what: "`trustd run` peak RSS then, TUF 100k", bench: "BenchmarkDaemonStart/tuf-100k", metric: "listen-rss-MiB", max: 64, unit: "MiB", scale: 1},
	{what: "`trustd run` exec → control socket listening, Notary 100k", bench: "BenchmarkDaemonStart/notary-100k", metric: "listen-ms", max: 300, unit: "ms", scale: 1},
	{what: "`trustd run` peak RSS then, Notary 100k", bench: "BenchmarkDaemonStart/notary-100k", metric: "listen-rss-MiB", max: 64, unit: "MiB", scale: 1},
	{what: "1000 Notary repositories (10 tags each): time (fresh process)", bench: "BenchmarkColdStart/notary-1000-repos", metric: "child-ms", unit: "ms", scale: 1},
	{what: "both 100k sources (200k tags): time (fresh process)", bench: "BenchmarkColdStart/all-200k", metric: "child-ms", unit: "ms", scale: 1},
	{what: "both 100k sources (200k tags): peak RSS", bench: "BenchmarkColdStart/all-200k", metric: "peak-rss-MiB", unit: "MiB", scale: 1},
	{what: "cosign, 10k signed digests over 1000 repositories (10,900 ECDSA P-256 signatures, each verified again): time (fresh process)", bench: "BenchmarkColdStart/sigstore-10k", metric: "child-ms", unit: "ms", scale: 1, note: "the cryptography happens here, once per start, not per decision"},
	{what: "cosign 10k: CPU time (fresh process)", bench: "BenchmarkColdStart/sigstore-10k", metric: "child-cpu-ms", unit: "ms", scale: 1},
	{what: "cosign 10k: peak RSS (VmHWM, fresh process)", bench: "BenchmarkColdStart/sigstore-10k", metric: "peak-rss-MiB", unit: "MiB", scale: 1},
	{what: "cosign 10k: heap kept live by the index", bench: "BenchmarkColdStart/sigstore-10k", metric: "live-heap-MiB", unit: "MiB", scale: 1},

	{section: "Refresh (loopback HTTP; bytes counted at the server's listener, both directions)"},
	{what: "unchanged Notary repository (10 tags): requests", bench: "BenchmarkRefreshUnchanged/notary-10-tags", metric: "requests/op", max: 1, unit: "requests", scale: 1},
	{what: "unchanged Notary repository (10 tags): bytes on the wire", bench: "BenchmarkRefreshUnchanged/notary-10-tags", metric: "wire-B/op", max: 2048, unit: "B", scale: 1},
	{what: "unchanged Notary repository (10 tags) over HTTPS, new connection, trustd's client (X25519/P-256 key exchange, TLS session resumption; httptest certificate): bytes", bench: "BenchmarkRefreshUnchanged/notary-10-tags/https-new-connection-resumed-default-client", metric: "wire-B/op", max: 2048, unit: "B", scale: 1, note: "after the idle timeout, a refresh opens a new connection"},
	{what: "  for comparison, Go's default TLS client, a new connection (no resumption)", bench: "BenchmarkRefreshUnchanged/notary-10-tags/https-new-connection", metric: "wire-B/op", unit: "B", scale: 1},
	{what: "  Go's default TLS client with session resumption (post-quantum X25519MLKEM768 key shares)", bench: "BenchmarkRefreshUnchanged/notary-10-tags/https-new-connection-resumed", metric: "wire-B/op", unit: "B", scale: 1},
	{what: "  Go's default TLS client, resumption, X25519 alone", bench: "BenchmarkRefreshUnchanged/notary-10-tags/https-new-connection-resumed-x25519", metric: "wire-B/op", unit: "B", scale: 1},
	{what: "unchanged Notary repository (100k tags): requests", bench: "BenchmarkRefreshUnchanged/notary-100k-tags", metric: "requests/op", max: 1, unit: "requests", scale: 1},
	{what: "unchanged Notary repository (100k tags): bytes on the wire", bench: "BenchmarkRefreshUnchanged/notary-100k-tags", metric: "wire-B/op", max: 2048, unit: "B", scale: 1},
	{what: "unchanged Notary repository (100k tags): time (reads the cached bundle and its derived index)", bench: "BenchmarkRefreshUnchanged/notary-100k-tags", metric: "ns/op", unit: "ms", scale: 1e-6},
	{what: "unchanged TUF repository (100k targets): requests", bench: "BenchmarkRefreshUnchanged/tuf-100k-tags", metric: "requests/op", max: 1, unit: "requests", scale: 1, note: "timestamp.json alone; the N+1.root.json probe at most hourly"},
	{what: "unchanged TUF repository (100k targets): bytes on the wire", bench: "BenchmarkRefreshUnchanged/tuf-100k-tags", metric: "wire-B/op", max: 2048, unit: "B", scale: 1},
	{what: "unchanged TUF repository (100k targets): time (reads the cached bundle and its derived index)", bench: "BenchmarkRefreshUnchanged/tuf-100k-tags", metric: "ns/op", unit: "ms", scale: 1e-6},
	{what: "unchanged TUF source as the daemon syncs it (Store.SyncSource): registry requests", bench: "BenchmarkStoreSyncUnchanged", metric: "registry-requests/op", max: 0, unit: "requests", scale: 1, note: "every round after the first; signed manifests are fetched only when the trust data changed, or hourly to retry"},
	{what: "1000 Notary repositories, first sync (8 at a time)", bench: "BenchmarkRefresh1000Notary/first", metric: "ns/op", max: 5, unit: "s", scale: 1e-9},
	{what: "1000 Notary repositories, unchanged (8 at a time)", bench: "BenchmarkRefresh1000Notary/unchanged", metric: "ns/op", max: 5, unit: "s", scale: 1e-9},
	{what: "1000 Notary repositories, unchanged: connections opened", bench: "BenchmarkRefresh1000Notary/unchanged", metric: "conns/op", unit: "conns", scale: 1},

	{section: "`trustd repo sign`: one more tag into a 100k-target repository (made by `trustd repo`'s API, in 256 succinct hash bins)"},
	{what: "bytes written to the published tree per sign", bench: "BenchmarkSignOneTag", metric: "bytes-written/op", max: 200, unit: "KB", scale: 1e-3, note: "goal: rewrites only what changed (its bin, the snapshot, timestamp.json): bytes written ≪ the repository's size, below"},
	{what: "  files written per sign", bench: "BenchmarkSignOneTag", metric: "files-written/op", max: 3, unit: "files", scale: 1},
	{what: "  the published tree's size", bench: "BenchmarkSignOneTag", metric: "repo-bytes", unit: "MB", scale: 1e-6},
	{what: "time per sign (repository open; no registry)", bench: "BenchmarkSignOneTag", metric: "ns/op", unit: "ms", scale: 1e-6},

	{section: "`trustd verify --archive` (512 MiB docker save, uncompressed layers, page cache)"},
	{what: "throughput relative to `openssl dgst -sha256`, same file, same run", bench: "BenchmarkVerifyArchive", metric: "archive-vs-openssl", min: 0.8, unit: "×", scale: 1},
	{what: "  trustd verify --archive", bench: "BenchmarkVerifyArchive", metric: "archive-MB/s", unit: "MB/s", scale: 1},
	{what: "  openssl dgst -sha256", bench: "BenchmarkVerifyArchive", metric: "openssl-MB/s", unit: "MB/s", scale: 1},
	{what: "  trustd verify --archive peak RSS", bench: "BenchmarkVerifyArchive", metric: "archive-maxrss-MiB", unit: "MiB", scale: 1},

	{section: "CRI CreateContainer on the real harness (containerd 2.4.2, runc 1.5.2)"},
	{what: "without trustd (NRI on, no validator), median", bench: "BenchmarkCreateContainer", metric: "without-ns/op", unit: "ms", scale: 1e-6},
	{what: "with trustd (NRI validation, trustd required), median", bench: "BenchmarkCreateContainer", metric: "with-ns/op", unit: "ms", scale: 1e-6},
	{what: "added by trustd: median of (with − without), creations paired", bench: "BenchmarkCreateContainer", metric: "added-ns/op", unit: "ms", scale: 1e-6},
	{what: "added by trustd, share of the without median", bench: "BenchmarkCreateContainer", metric: "added-%", max: 2, unit: "%", scale: 1},
	{what: "  floor: a do-nothing validator process required instead: median of (floor − without)", bench: "BenchmarkCreateContainer", metric: "floor-added-ns/op", unit: "ms", scale: 1e-6, note: "what NRI validation costs whatever the validator does"},
	{what: "  trustd over the floor: median of (with − floor)", bench: "BenchmarkCreateContainer", metric: "over-floor-ns/op", unit: "ms", scale: 1e-6},
	{what: "  trustd over the floor, share of the without median", bench: "BenchmarkCreateContainer", metric: "over-floor-%", unit: "%", scale: 1},
	{what: "  trustd CPU time per creation (all of trustd, background included)", bench: "BenchmarkCreateContainer", metric: "trustd-cpu-ns/op", unit: "ms", scale: 1e-6},
	{what: "  the do-nothing validator's CPU time per creation (NRI's message handling alone)", bench: "BenchmarkCreateContainer", metric: "noop-validator-cpu-ns/op", unit: "ms", scale: 1e-6},
	{what: "  containerd's CPU time per creation: without / floor / with trustd", bench: "BenchmarkCreateContainer", metric: "baseline-cpu-ns/op", unit: "ms", scale: 1e-6},
	{what: "  (floor)", bench: "BenchmarkCreateContainer", metric: "floor-containerd-cpu-ns/op", unit: "ms", scale: 1e-6},
	{what: "  (with trustd)", bench: "BenchmarkCreateContainer", metric: "containerd-cpu-ns/op", unit: "ms", scale: 1e-6},
}

func format(v float64) string {
	switch a := abs(v); {
	case a == float64(int64(a)):
		return strconv.FormatInt(int64(v), 10)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func machine(loads []float64) string {
	var b strings.Builder
	model := "unknown"
	if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(c), "\n") {
			if m, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(m), ":"))
				break
			}
		}
	}
	gov, _ := exec.Command("go", "version").Output()
	mem := ""
	if m, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(m), "\n", 2)[0])[1] + " kB"
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- nproc: %d; CPU: %s; memory: %s; kernel %s\n", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)))
	fmt.Fprintf(&b, "- %s", strings.TrimSpace(string(gov)))
	fmt.Fprintf(&b, "\n- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	if len(loads) > 0 {
		fmt.Fprintf(&b, "- 1-minute load average at the start and end of the runs: %s to %s (2 cores; other work was running)\n", format(slices.Min(loads)), format(slices.Max(loads)))
	}
	return b.String()
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "output file")
	flag.Parse()
	rs := results{}
	var raw strings.Builder
	var loads []float64
	cmds := map[string]string{}
	files := flag.Args()
	sort.Slice(files, func(i, j int) bool { return runOrder(files[i]) < runOrder(files[j]) })
	for _, f := range files {
		if err := parse(f, rs, &raw, &loads, cmds); err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
	}
	var b strings.Builder
	b.WriteString("# trustd benchmarks (issue 7)\n\n")
	b.WriteString("Generated by `make bench` (scripts/bench.sh → internal/gen/cmd/benchreport). Values are medians over the runs " +
		"(`-count`) of each benchmark; latencies are percentiles of every call of the loop. The data set is made by " +
		"internal/gen with real keys: a TUF repository of 100,000 targets `<repo>:<tag>` over 10,000 repositories in 256 " +
		"succinct hash bins (TAP 15), a Notary repository of 100,000 tags (targets.json ≈ 9 MB, a targets/releases " +
		"delegation, root certificate from a pinned CA), 1000 Notary repositories of 10 tags, 10,000 cosign-signed digests " +
		"over 1000 repositories (10,900 keyed ECDSA P-256 simple-signing signatures in trustd's sigstore cache; 100 of the " +
		"repositories under a rule requiring 2 of 2 keys), and a 52-rule policy. " +
		"The machine is shared and busy (see the load average): compare values measured in the same run (`/bin/true` " +
		"beside the verifier, openssl beside the archive reader, without beside with trustd), and prefer CPU time to " +
		"wall time where both are given.\n\n")
	b.WriteString("| figure | goal | measured | | method |\n|---|---|---|---|---|\n")
	for _, f := range figures {
		if f.section != "" {
			fmt.Fprintf(&b, "| **%s** | | | | |\n", f.section)
			continue
		}
		r := rs[key(f.bench, f.metric)]
		goal := ""
		switch {
		case f.min != 0:
			goal = "≥ " + format(f.min) + " " + f.unit
		case f.max != 0 || strings.HasPrefix(f.note, "goal"):
			goal = "≤ " + format(f.max) + " " + f.unit
		}
		if f.metric == "registry-requests/op" {
			goal = "0 (one timestamp request in all)"
		}
		if r == nil {
			fmt.Fprintf(&b, "| %s | %s | not run | TODO | `%s` |\n", f.what, goal, f.bench)
			continue
		}
		v := r.median() * f.scale
		if f.minus != "" {
			m := rs[key(f.minus, f.metric)]
			if m == nil {
				fmt.Fprintf(&b, "| %s | %s | not run | TODO | `%s` |\n", f.what, goal, f.minus)
				continue
			}
			v -= m.median() * f.scale
		}
		verdict := ""
		switch {
		case f.min != 0 && v >= f.min, goal != "" && f.min == 0 && v <= f.max:
			verdict = "pass"
		case goal != "":
			verdict = "**MISS**"
		}
		note := ""
		if f.note != "" && !strings.HasPrefix(f.note, "goal") {
			note = " (" + f.note + ")"
		}
		fmt.Fprintf(&b, "| %s%s | %s | %s %s | %s | [%s](#runs) `%s` %s, n=%d |\n", f.what, note, goal, format(v), f.unit, verdict, r.run, strings.TrimPrefix(f.bench, "Benchmark"), f.metric, len(r.values))
	}
	b.WriteString("\n## Runs\n\nEach figure's method names the run that measured it (n: how many values the median is of):\n\n")
	runs := make([]string, 0, len(cmds))
	for r := range cmds {
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runOrder(runs[i]) < runOrder(runs[j]) })
	for _, r := range runs {
		fmt.Fprintf(&b, "- %s: `%s`\n", r, cmds[r])
	}
	b.WriteString("\nEnvironment: `TRUSTD_BENCH_DATA` (the data set, generated once by `go run ./internal/gen/cmd/trustd-gen -data DIR`) and `TRUSTD_BENCH_BIN` (`go build -trimpath ./cmd/trustd`); both set by scripts/bench.sh.\n")
	b.WriteString("\n## Machine\n\n")
	b.WriteString(machine(loads))
	b.WriteString("\n## Raw results\n\n<details><summary>go test -bench output</summary>\n\n```\n")
	b.WriteString(strings.TrimLeft(raw.String(), "\n"))
	b.WriteString("```\n\n</details>\n")
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	fmt.Printf("benchreport: %s (%d results from %s)\n", *out, len(rs), strings.Join(baseNames(files), ", "))
}

// runOrder orders "N-name" runs by N.
func runOrder(path string) int {
	n, _ := strconv.Atoi(strings.SplitN(filepath.Base(path), "-", 2)[0])
	return n
}

func baseNames(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = filepath.Base(f)
	}
	return out
}
