#!/usr/bin/env bash
# Manual smoke test of the .deb on a real systemd (not part of `make test`): boots a
# Debian 12 tree with systemd as PID 1 in systemd-nspawn, runs containerd there (the
# binary `make tools` built), installs the package with dpkg, and checks what a unit
# test cannot: the sandboxed unit starts, READY comes after NRI registration, the
# watchdog is fed, reload and a broken policy behave, trustd survives a containerd
# restart with the drop-in enabled, and upgrade, remove and purge work with systemd.
#
# Needs root, Debian's debootstrap and systemd-container, the Debian mirror, and
# containerd v2.4.x in ${TRUSTD_E2E_CACHE:-~/.cache/trustd-e2e}. Takes a few minutes the
# first time (debootstrap); the tree is kept in $ROOT for later runs.
#
# Usage: test/packaging/nspawn-smoke.sh [path/to/trustd_*.deb]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=${ROOT:-/var/tmp/trustd-nspawn-root}
cache=${TRUSTD_E2E_CACHE:-$HOME/.cache/trustd-e2e}
ctrd=$(ls -d "$cache"/containerd-v2.4.*/bin 2>/dev/null | tail -1)
[ -n "$ctrd" ] || { echo "no containerd 2.4 in $cache: run make tools" >&2; exit 2; }

deb=${1:-}
if [ -z "$deb" ]; then
	make -C "$here" --no-print-directory package >/dev/null
	deb=$(ls "$here"/bin/dist/trustd_*.deb)
fi

command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm "$ROOT" >/dev/null
fi

install -m 0755 "$ctrd/containerd" "$ROOT/usr/local/bin/containerd"
mkdir -p "$ROOT/etc/containerd/conf.d"
rm -f "$ROOT/etc/containerd/conf.d/"*.toml
cat >"$ROOT/etc/containerd/config.toml" <<'EOF'
version = 3
imports = ['/etc/containerd/conf.d/*.toml']
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'native'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
EOF
cat >"$ROOT/etc/systemd/system/containerd.service" <<'EOF'
[Unit]
Description=containerd (smoke test)
[Service]
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/containerd.service "$ROOT/etc/systemd/system/multi-user.target.wants/containerd.service"
cp "$deb" "$ROOT/root/trustd.deb"

systemd-nspawn --quiet --register=no --keep-unit -D "$ROOT" -b --console=passive >/tmp/trustd-nspawn.log 2>&1 &
nspawn=$!
trap 'kill $nspawn 2>/dev/null; wait $nspawn 2>/dev/null || true' EXIT
leader=
for _ in $(seq 50); do
	leader=$(pgrep -P $nspawn || true)
	[ -n "$leader" ] && nsenter -t "$leader" -a -- systemctl is-system-running --wait >/dev/null 2>&1 && break
	sleep 0.2
done
inside() { nsenter -t "$leader" -a -- "$@"; }
check() { # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then echo "ok    $1"; else echo "FAIL  $1"; fails=$((fails + 1)); fi
}
fails=0
prop() { inside systemctl show trustd -p "$1" --value; }

inside dpkg -i /root/trustd.deb >/dev/null
for _ in $(seq 50); do [ "$(prop ActiveState)" = active ] && break; sleep 0.2; done
check "installed and started (READY after NRI registration)" test "$(prop ActiveState)" = active
check "trustd status: NRI connected" sh -c "nsenter -t $leader -a -- trustd status | grep -q 'NRI connected: true'"
echo "      exposure: $(inside systemd-analyze security trustd.service --no-pager | tail -1)"
w1=$(prop WatchdogTimestampMonotonic); sleep 11; w2=$(prop WatchdogTimestampMonotonic)
check "watchdog fed (WATCHDOG=1 every WatchdogSec/3)" test "$w2" -gt "$w1"
check "systemctl reload" inside systemctl reload trustd
inside cp /etc/trustd/policy.toml /root/policy.good
inside sh -c 'echo "bogus = 1" >>/etc/trustd/policy.toml'
inside systemctl reload trustd
check "a broken policy on reload keeps the daemon running" test "$(prop ActiveState)" = active
inside systemctl restart trustd 2>/dev/null || true
check "a broken policy at start: retried, not given up" test "$(prop SubState)" != failed
inside cp /root/policy.good /etc/trustd/policy.toml
for _ in $(seq 50); do [ "$(prop ActiveState)" = active ] && break; sleep 0.2; done
check "comes up by itself once the policy is fixed" test "$(prop ActiveState)" = active
pid=$(prop MainPID)
inside install -m 0644 /usr/share/trustd/containerd-trustd.toml /etc/containerd/conf.d/50-trustd.toml
inside systemctl restart containerd
sleep 3
check "containerd restart with the drop-in: same trustd process" test "$(prop MainPID)" = "$pid"
check "re-registered with NRI" sh -c "nsenter -t $leader -a -- trustd status | grep -q 'NRI connected: true'"
check "default validator enabled by the drop-in" sh -c "nsenter -t $leader -a -- journalctl -u containerd -o cat | grep -q 'starting builtin NRI plugin .*00-default-validator'"
inside dpkg -i /root/trustd.deb >/dev/null
check "upgrade restarts a running trustd" test "$(prop MainPID)" != "$pid"
check "removal warns while containerd requires trustd" sh -c "nsenter -t $leader -a -- dpkg -r trustd 2>&1 | grep -q 'still lists trustd'"
inside dpkg -P trustd >/dev/null 2>&1
check "purge removes /etc/trustd and /var/lib/trustd" sh -c "! nsenter -t $leader -a -- ls /etc/trustd /var/lib/trustd"
rm -f "$ROOT/etc/containerd/conf.d/50-trustd.toml"
echo "$fails failed"
[ "$fails" -eq 0 ]
