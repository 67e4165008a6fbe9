#!/usr/bin/env bash
# Installs the tools trustd's end-to-end tests run, idempotently:
#   - Debian packages: libseccomp-dev pkg-config gcc libc6-dev (to build runc) and notary;
#   - containerd, ctr, containerd-shim-runc-v2 and runc, built with `go install`
#     at the versions pinned in test/versions.env, into
#     ${TRUSTD_E2E_CACHE:-$HOME/.cache/trustd-e2e}/<name>-<version>/bin,
#     only when the binaries are not there yet (the directory is a cache: keep it between runs).
#     containerd is built at every release of CONTAINERD_MATRIX (and at
#     CONTAINERD_VERSION, the full suite's): a cold build takes about 2 minutes
#     per release on 2 cores, the later ones less (they share Go's build cache).
#   - dockerd (moby v2, `go install`, about 4 minutes cold on 2 cores) for the
#     Docker authorization plugin's tests, into the same cache;
#   - the clients the tests drive containerd with, into the same cache: crictl
#     (`go install`) and a kubelet, built from the wrapper module test/tools/kubelet
#     (k8s.io/kubernetes pins its staging modules to paths a module download lacks;
#     the wrapper pins them to their releases): about 4-5 minutes cold on 2 cores.
#   - cosign (COSIGN_VERSION, `go install`, about 3 minutes cold on 2 cores) for the
#     sigstore tests, into the same cache;
#   - tuf-js (TUFJS_VERSION), a second TUF client, from the npm registry with npm into
#     the same cache as tuf-js-<version>/node_modules (needs nodejs and npm; skipped
#     with a line saying so when npm is missing).
# Prints one line per tool. Run as root (apt-get); `make tools` runs it.
#
# Usage: test/tools.sh            install what is missing
#        test/tools.sh --paths    print NAME=DIR for each tool's bin directory, install nothing
#                                 (containerd: CONTAINERD_VERSION's, or the override's)
#
# Environment:
#   TRUSTD_E2E_CACHE                 cache directory (default $HOME/.cache/trustd-e2e)
#   TRUSTD_E2E_CONTAINERD_VERSION    the one containerd version to install instead of the
#                                    pinned ones (a CI job per release: v2.2.9, v2.3.7, ...)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache=${TRUSTD_E2E_CACHE:-$HOME/.cache/trustd-e2e}
containerd_version=${TRUSTD_E2E_CONTAINERD_VERSION:-$CONTAINERD_VERSION}
# containerd_versions: what to build, each once: the override alone, or the
# full suite's version and the matrix's (comma-separated in versions.env).
containerd_versions=("$containerd_version")
if [ -z "${TRUSTD_E2E_CONTAINERD_VERSION:-}" ]; then
	IFS=, read -r -a matrix <<<"${CONTAINERD_MATRIX:-}"
	for v in "${matrix[@]}"; do
		[[ " ${containerd_versions[*]} " == *" $v "* ]] || containerd_versions+=("$v")
	done
fi
runc_version=$RUNC_VERSION
kubelet_version=$KUBELET_VERSION
crictl_version=$CRICTL_VERSION
dockerd_version=$DOCKERD_VERSION
cosign_version=$COSIGN_VERSION
tufjs_version=${TUFJS_VERSION:-}
# Debian packages: runc's seccomp build needs libseccomp-dev, pkg-config and a C
# toolchain; notary provides notary-server/notary-signer/notary for the Notary v1 tests;
# systemd (systemd-analyze), lintian and dpkg-dev check the unit and the .deb (test/packaging).
packages=(libseccomp-dev pkg-config gcc libc6-dev notary systemd lintian dpkg-dev git make)

# bindir NAME VERSION: where a tool is installed; test/harness computes the same path.
bindir() { printf '%s/%s-%s/bin\n' "$cache" "$1" "$2"; }

# have_all DIR BIN...: true when every BIN is an executable file in DIR.
have_all() {
	local dir=$1; shift
	local b
	for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# report NAME VERSION DIR STATE: the one line printed per tool.
report() { printf '%-24s %-16s %-9s %s\n' "$1" "$2" "$4" "$3"; }

# go_install DIR TAGS LDFLAGS PKG@VERSION...: build Go commands into DIR, outside any module.
go_install() {
	local dir=$1 tags=$2 ldflags=$3; shift 3
	mkdir -p "$dir"
	# Run from / with GOFLAGS cleared so that the caller's module (and its
	# go.mod, vendor or workspace settings) cannot influence the build.
	(cd / && env -u GOFLAGS GOWORK=off GOBIN="$dir" CGO_ENABLED=1 go install -tags "$tags" -ldflags "$ldflags" "$@")
}

ensure_packages() {
	local -a missing=()
	local p
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "tools.sh: missing Debian packages: ${missing[*]}; run as root (sudo make tools)" >&2
			exit 1
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	for p in "${packages[@]}"; do
		local state=present
		[[ " ${missing[*]} " == *" $p "* ]] && state=installed
		report "$p" "$(dpkg-query -W -f='${Version}' "$p")" "(debian)" "$state"
	done
}

# containerd_tags VERSION: build tags for a containerd release. Add a case
# here when a release in the matrix needs different ones.
containerd_tags() {
	case "$1" in
	*) echo no_btrfs ;;
	esac
}

# containerd_ldflags VERSION: stamp the version in, as containerd's release
# builds do: `containerd --version`, and the runtime version NRI plugins are
# told (trustd chooses its decision point from it), read v2.3.7, not
# 2.3.7+unknown.
containerd_ldflags() {
	printf -- '-X github.com/containerd/containerd/v2/version.Version=%s\n' "$1"
}

ensure_containerd() {
	local v=$1 dir flags
	dir=$(bindir containerd "$v")
	# The flags a build used are kept next to it: other flags, another build.
	flags="tags=$(containerd_tags "$v") ldflags=$(containerd_ldflags "$v")"
	local state=cached
	if ! have_all "$dir" containerd ctr containerd-shim-runc-v2 || [ "$(cat "$dir/.build-flags" 2>/dev/null)" != "$flags" ]; then
		go_install "$dir" "$(containerd_tags "$v")" "$(containerd_ldflags "$v")" \
			"github.com/containerd/containerd/v2/cmd/containerd@$v" \
			"github.com/containerd/containerd/v2/cmd/ctr@$v" \
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$v"
		printf '%s\n' "$flags" >"$dir/.build-flags"
		state=built
	fi
	local b
	for b in containerd ctr containerd-shim-runc-v2; do
		report "$b" "$v" "$dir/$b" "$state"
	done
}

ensure_runc() {
	local v=$1 dir
	dir=$(bindir runc "$v")
	local state=cached
	if ! have_all "$dir" runc; then
		go_install "$dir" seccomp "" "github.com/opencontainers/runc@$v"
		state=built
	fi
	report runc "$v" "$dir/runc" "$state"
}

ensure_crictl() {
	local v=$1 dir
	dir=$(bindir crictl "$v")
	local state=cached
	if ! have_all "$dir" crictl; then
		go_install "$dir" "" "" "sigs.k8s.io/cri-tools/cmd/crictl@$v"
		state=built
	fi
	report crictl "$v" "$dir/crictl" "$state"
}

# dockerd_ldflags VERSION: stamp the version in, as moby's release builds
# do: GET /version then reports it (trustd checks it for the
# CVE-2024-41110 fix) instead of "library-import".
dockerd_ldflags() {
	printf -- '-X github.com/moby/moby/v2/dockerversion.Version=%s\n' "$1"
}

ensure_dockerd() {
	local v=$1 dir flags
	dir=$(bindir dockerd "$v")
	flags="tags=no_btrfs ldflags=$(dockerd_ldflags "$v")"
	local state=cached
	if ! have_all "$dir" dockerd || [ "$(cat "$dir/.build-flags" 2>/dev/null)" != "$flags" ]; then
		go_install "$dir" no_btrfs "$(dockerd_ldflags "$v")" "github.com/moby/moby/v2/cmd/dockerd@$v"
		printf '%s\n' "$flags" >"$dir/.build-flags"
		state=built
	fi
	report dockerd "$v" "$dir/dockerd" "$state"
}

ensure_cosign() {
	local v=$1 dir
	dir=$(bindir cosign "$v")
	local state=cached
	if ! have_all "$dir" cosign; then
		go_install "$dir" "" "" "github.com/sigstore/cosign/v3/cmd/cosign@$v"
		state=built
	fi
	report cosign "$v" "$dir/cosign" "$state"
}

ensure_kubelet() {
	local v=$1 dir mod=$here/tools/kubelet
	dir=$(bindir kubelet "$v")
	# The wrapper module decides what is built: it must be the pinned release.
	if ! grep -qx "require k8s.io/kubernetes $v" "$mod/go.mod"; then
		echo "tools.sh: $mod/go.mod does not require k8s.io/kubernetes $v (KUBELET_VERSION in versions.env): update both together" >&2
		exit 1
	fi
	local state=cached
	if ! have_all "$dir" kubelet; then
		mkdir -p "$dir"
		# Built under a temporary name: an interrupted build is not a cached one.
		(cd "$mod" && env -u GOFLAGS GOWORK=off CGO_ENABLED=1 go build -trimpath -o "$dir/kubelet.partial" k8s.io/kubernetes/cmd/kubelet)
		mv -f "$dir/kubelet.partial" "$dir/kubelet"
		state=built
	fi
	report kubelet "$v" "$dir/kubelet" "$state"
}

ensure_tufjs() {
	local v=$1 dir
	dir="$cache/tuf-js-$v"
	if ! command -v npm >/dev/null; then
		report tuf-js "$v" "$dir" "no-npm"
		return
	fi
	local state=cached
	if ! grep -qs "\"version\": \"$v\"" "$dir/node_modules/tuf-js/package.json"; then
		# Installed under a temporary name: an interrupted install is not a cached one.
		rm -rf "$dir.partial"
		npm install --prefix "$dir.partial" --no-audit --no-fund --no-save "tuf-js@$v" >/dev/null
		rm -rf "$dir"
		mv "$dir.partial" "$dir"
		state=installed
	fi
	report tuf-js "$v" "$dir" "$state"
}

case "${1:-}" in
--paths)
	echo "CONTAINERD_BIN=$(bindir containerd "$containerd_version")"
	echo "RUNC_BIN=$(bindir runc "$runc_version")"
	echo "KUBELET_BIN=$(bindir kubelet "$kubelet_version")"
	echo "CRICTL_BIN=$(bindir crictl "$crictl_version")"
	echo "DOCKERD_BIN=$(bindir dockerd "$dockerd_version")"
	echo "TUFJS_DIR=$cache/tuf-js-$tufjs_version"
	echo "COSIGN_BIN=$(bindir cosign "$cosign_version")"
	exit 0
	;;
"") ;;
*)
	echo "usage: $0 [--paths]" >&2
	exit 2
	;;
esac

command -v go >/dev/null || { echo "tools.sh: go is not on PATH" >&2; exit 1; }
ensure_packages
for v in "${containerd_versions[@]}"; do
	ensure_containerd "$v"
done
ensure_runc "$runc_version"
ensure_crictl "$crictl_version"
ensure_kubelet "$kubelet_version"
ensure_dockerd "$dockerd_version"
ensure_tufjs "$tufjs_version"
ensure_cosign "$cosign_version"
