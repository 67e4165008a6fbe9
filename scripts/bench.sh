#!/usr/bin/env bash
# scripts/bench.sh — run trustd's benchmarks (issue 7) and write BENCHMARKS.md.
#
# `make bench` runs it. It builds trustd, generates the benchmark data set
# once (internal/gen: ~1 minute, reused for a week from $TRUSTD_BENCH_DATA),
# runs each benchmark with -benchmem and -count, then the CRI
# CreateContainer benchmark on the real harness when running as root (it
# skips itself when the end-to-end tools are missing: `make tools`), and
# turns the results into BENCHMARKS.md with internal/gen/cmd/benchreport.
#
# Environment:
#   COUNT=5        runs of the fast benchmarks (decisions, verifier exec, e2e)
#   SLOW_COUNT=3   runs of the slow ones (cold start, refresh, archive)
#   E2E=auto       auto: when root; 0: never; 1: always (fails when not root)
#   BENCH_OUT=DIR  where the raw results go (default: a new directory in $TMPDIR)
#   BENCH_MD=FILE  the report (default: BENCHMARKS.md in the repository)
#   TRUSTD_BENCH_DATA=DIR  the data set (default: ~/.cache/trustd-bench/data)
#   QUICK=1        one run of everything, fewer iterations (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
COUNT=${COUNT:-5}
SLOW_COUNT=${SLOW_COUNT:-3}
E2E=${E2E:-auto}
BENCH_MD=${BENCH_MD:-BENCHMARKS.md}
OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/trustd-bench/results-$(date -u +%Y%m%dT%H%M%SZ)}
if [ "${QUICK:-0}" = 1 ]; then
	COUNT=1 SLOW_COUNT=1
fi
iters() { # iterations for a benchmark: normal [quick]
	if [ "${QUICK:-0}" = 1 ]; then echo "${2:-$1}"; else echo "$1"; fi
}

mkdir -p "$OUT"
rm -f "$OUT"/*.txt
echo "bench: results in $OUT"

export TRUSTD_BENCH_DATA=${TRUSTD_BENCH_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/trustd-bench/data}
export TRUSTD_BENCH_BIN="$OUT/trustd"
"$GO" build -trimpath -o "$TRUSTD_BENCH_BIN" ./cmd/trustd
echo "bench: data set in $TRUSTD_BENCH_DATA"
"$GO" run ./internal/gen/cmd/trustd-gen -data "$TRUSTD_BENCH_DATA" >"$OUT/dataset.json"

load() { cut -d' ' -f1-3 /proc/loadavg; }

# bench NAME PACKAGE REGEXP BENCHTIME COUNT: one `go test -bench` run, its
# output in $OUT/NAME.txt with the command and the load around it.
bench() {
	local name=$1 pkg=$2 re=$3 bt=$4 count=$5
	local cmd="go test -run '^\$' -bench '$re' -benchmem -benchtime $bt -count $count $pkg"
	echo "== $cmd"
	{
		echo "# cmd: $cmd"
		echo "# load: $(load)"
	} >"$OUT/$name.txt"
	local rc=0
	"$GO" test -run '^$' -bench "$re" -benchmem -benchtime "$bt" -count "$count" -timeout 90m "$pkg" 2>&1 |
		tee -a "$OUT/$name.txt" | grep -E '^(Benchmark|--- |FAIL|ok|PASS)' || rc=$?
	echo "# load: $(load)" >>"$OUT/$name.txt"
	if grep -q '^FAIL' "$OUT/$name.txt"; then
		echo "bench: $name failed (see $OUT/$name.txt)" >&2
		FAILED="${FAILED:-} $name"
	fi
	return 0
}

bench 1-decide ./verify 'BenchmarkDecide$|BenchmarkDecideParts$' "$(iters 1s 200ms)" "$COUNT"
bench 2-engine ./plugin/engine 'BenchmarkEngineDecide$' "$(iters 1s 200ms)" "$COUNT"
bench 3-verifier-daemon ./cmd/trustd 'BenchmarkVerifierExec$/^daemon' "$(iters 100x 20x)" "$COUNT"
bench 4-verifier-nodaemon ./cmd/trustd 'BenchmarkVerifierExec$/^no-daemon' "$(iters 3x 1x)" "$SLOW_COUNT"
bench 5-coldstart ./cache 'BenchmarkColdStart$' "$(iters 2x 1x)" "$SLOW_COUNT"
bench 6-daemonstart ./cmd/trustd 'BenchmarkDaemonStart$' "$(iters 3x 1x)" "$SLOW_COUNT"
bench 7-notary-verify ./verify/notary 'BenchmarkVerifyGenerated100k$' "$(iters 2x 1x)" "$SLOW_COUNT"
bench 8-refresh ./cache 'BenchmarkRefreshUnchanged$|BenchmarkRefresh1000Notary$|BenchmarkStoreSyncUnchanged$' "$(iters 3x 1x)" "$SLOW_COUNT"
bench 9-archive ./cmd/trustd 'BenchmarkVerifyArchive$' "$(iters 5x 2x)" "$SLOW_COUNT"
bench 14-publish ./cache/publish 'BenchmarkSignOneTag$' "$(iters 20x 5x)" "$SLOW_COUNT"
# The other benchmarks of the repository, for the record.
bench 10-other-notary ./verify/notary 'BenchmarkVerify10kTags$|BenchmarkVerifyAlpine$' 1s "$COUNT"
bench 13-policy-parse ./policy 'BenchmarkParseGenerated$' "$(iters 1s 200ms)" "$COUNT"
if [ -d plugin/archive ]; then
	bench 11-other-archive ./plugin/archive 'BenchmarkRead$' 5x "$SLOW_COUNT"
fi

case "$E2E" in
auto) [ "$(id -u)" = 0 ] && E2E=1 || E2E=0 ;;
esac
if [ "$E2E" = 1 ]; then
	bench 12-e2e-create ./test/e2e 'BenchmarkCreateContainer$' "$(iters 300x 30x)" "$COUNT"
else
	echo "bench: not root: CRI CreateContainer benchmark skipped (sudo make bench)"
fi

"$GO" run ./internal/gen/cmd/benchreport -o "$BENCH_MD" "$OUT"/*.txt
if [ -n "${FAILED:-}" ]; then
	echo "bench: failed:$FAILED" >&2
	exit 1
fi
