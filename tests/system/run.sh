#!/usr/bin/env bash
# System test: boots Debian 12 with systemd in a container (systemd-nspawn), installs the .deb
# and runs selftest.sh inside. Needs root. The rootfs is built once by debootstrap and cached.
# Usage: tests/system/run.sh PATH/TO/p2pd_*.deb
set -euo pipefail
deb=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
cache=${P2PD_SYSTEST_CACHE:-/var/cache/p2pd-systemtest}
command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq systemd-container debootstrap >/dev/null; }
if [ ! -d "$cache/rootfs" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    mkdir -p "$cache"
    rm -rf "$cache/rootfs.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,iproute2 \
        bookworm "$cache/rootfs.tmp" "$mirror" >/dev/null
    mv "$cache/rootfs.tmp" "$cache/rootfs"
fi
t=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$t" "$out"' EXIT
cp "$deb" "$t/p2pd.deb"
cp "$here/selftest.sh" "$t/selftest.sh"
chmod 755 "$t" "$t/selftest.sh"
timeout 600 systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay --private-network \
    -D "$cache/rootfs" --bind-ro="$t:/opt/t" --bind="$out:/opt/out" -b -- \
    systemd.show_status=0 systemd.run=/opt/t/selftest.sh \
    systemd.run_success_action=exit systemd.run_failure_action=exit || true
cat "$out/log" 2>/dev/null || echo "no log from the container"
tail -n 1 "$out/log" 2>/dev/null | grep -q '^SYSTEM TEST PASSED$'
