#!/usr/bin/env bash
# Peer-policy figures on real daemons over loopback (release build): a 10,000-message pub/sub
# burst through two daemons against bare Unix-socket round trips, and connecting during a
# 300-socket handshake flood against connecting without it. Medians (min-max) of interleaved
# runs, with the ratio to the baseline measured in the same run.
#   scripts/bench-policy.sh [RUNS]     (default 3; --quick = 1 run)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
[ "$runs" = "--quick" ] && runs=1
cargo build --release --locked -p p2pd -p p2pctl -p p2pd-e2e --bins
target/release/policy_bench "$runs"
