#!/bin/sh
# Prints the Debian package version of the checked-out tree:
#   a release tag vX.Y.Z               -> X.Y.Z
#   N commits after vX.Y.Z (hash H)    -> X.Y.Z+N.gH
#   no release tag yet                 -> 0.0.0~gitYYYYMMDD.H  (sorts before any 0.0.0 release)
# with "+dirty" appended when tracked files are modified. `make package VERSION=...`
# overrides it.
set -eu
cd "$(dirname "$0")/.."
dirty=
if ! git diff --quiet HEAD -- 2>/dev/null; then dirty=+dirty; fi
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	# v1.2.3 or v1.2.3-4-gabcdef0
	echo "$d" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f]*\)$/+\1.g\2/' -e "s/\$/$dirty/"
	exit 0
fi
if h=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	echo "0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$h$dirty"
	exit 0
fi
echo "0.0.0~unknown"
