#!/usr/bin/env bash
# Runs every fuzz target of the given packages for FUZZTIME each (make fuzz-short, make fuzz).
# A crasher fails the run (go writes it under testdata/fuzz/, keep it as a regression input).
# Go's fuzzer sometimes ends a clean run with "context deadline exceeded" when the time runs
# out while it minimises a new *interesting* (not failing) input (golang/go#48127); that
# outcome, with no failing input written, is reported and not counted as a failure.
set -uo pipefail
fuzztime=${FUZZTIME:-10s}
go=${GO:-go}
status=0
for pkg in "$@"; do
	dir=$($go list -f '{{.Dir}}' "$pkg") || exit 2
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
		echo "fuzz $pkg $f ($fuzztime)"
		out=$($go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" 2>&1)
		rc=$?
		printf '%s\n' "$out" | tail -4
		if [ $rc -ne 0 ]; then
			if ! grep -q 'Failing input written' <<<"$out" && grep -q 'context deadline exceeded' <<<"$out"; then
				echo "fuzz $pkg $f: ended while minimising a new input (no crasher): ok"
				continue
			fi
			printf '%s\n' "$out"
			status=1
		fi
	done
done
exit $status
