#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` clean, and the offline security exposure of
# p2pd.service at most 1.2 (threshold 12 on systemd-analyze's 0-100 scale).
# Needs the binaries built (target/debug) and systemd-analyze.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/debug"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants the executables to exist: check a copy that points at the built binaries.
for unit in p2pd.service p2pd.socket p2pd-query.socket; do
  sed "s#/usr/bin/#$bin/#g" "systemd/$unit" > "$tmp/$unit"
done
systemd-analyze verify --man=no "$tmp/p2pd.service" "$tmp/p2pd.socket" "$tmp/p2pd-query.socket"
systemd-analyze security --offline=true --threshold=12 systemd/p2pd.service | tail -n 1
echo "systemd units: verify clean, security exposure within 1.2"
