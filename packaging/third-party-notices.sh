#!/usr/bin/env bash
# Writes, to standard output, the license and notice texts of every Go module
# linked into the given binaries (from `go version -m`), read from the Go
# module cache: Apache-2.0 section 4(d) has NOTICE files of the modules that
# have one travel with binary copies, and the other licenses ask for their
# texts too. `make package` ships the result as
# /usr/share/doc/trustd/THIRD_PARTY_NOTICES. Fails when a module's directory
# or its license cannot be found, so that no module ships without its text.
set -euo pipefail
go=${GO:-go}
modcache=$($go env GOMODCACHE)

# escape PATH: the module cache's case encoding (an upper-case letter is "!"
# and the letter in lower case).
escape() { sed -e 's/\([A-Z]\)/!\L\1/g' <<<"$1"; }

echo "Third-party software linked into trustd"
echo "======================================="
echo
echo "trustd's static binaries include the Go modules below, each under its own"
echo "license. Their license and notice files follow, as each module ships them."
echo
status=0
# "dep" lines (and "=>" replacements) of every binary, once each.
mods=$($go version -m "$@" | awk '$1 == "dep" || $1 == "=>" { print $2 "@" $3 }' | sort -u)
for mv in $mods; do
	path=${mv%@*} version=${mv#*@}
	dir="$modcache/$(escape "$path")@$version"
	if [ ! -d "$dir" ]; then
		echo "third-party-notices: $path $version: not in the module cache ($dir); run go mod download" >&2
		status=1
		continue
	fi
	files=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' -o -iname 'NOTICE*' \) | sort)
	if [ -z "$files" ]; then
		echo "third-party-notices: $path $version: no license file" >&2
		status=1
		continue
	fi
	for f in $files; do
		echo "------------------------------------------------------------------------"
		echo "$path $version: $(basename "$f")"
		echo "------------------------------------------------------------------------"
		cat "$f"
		echo
	done
done
exit $status
