#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` clean, and the offline security exposure of
# p2pd.service at most 1.1 and of p2pd-gate.service at most 0.5 (thresholds 11 and 5 on
# systemd-analyze's 0-100 scale).
# Needs the binaries built (target/debug) and systemd-analyze.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/debug"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
units=(p2pd.service p2pd-gate.service p2pd.socket p2pd-query.socket p2pd-handoff.socket)
# verify wants the executables to exist: check a copy that points at the built binaries.
for unit in "${units[@]}"; do
  sed "s#/usr/bin/#$bin/#g" "systemd/$unit" > "$tmp/$unit"
done
systemd-analyze verify --man=no "${units[@]/#/$tmp/}"
systemd-analyze security --offline=true --threshold=11 systemd/p2pd.service | tail -n 1
systemd-analyze security --offline=true --threshold=5 systemd/p2pd-gate.service | tail -n 1
echo "systemd units: verify clean, security exposure within 1.1 (p2pd) and 0.5 (gate)"
