#!/usr/bin/env bash
# The data-plane benchmark suite on real daemons over loopback (release build): stream
# forwarding over TCP and QUIC, block exchange, pub/sub burst and paced latency, connection
# setup, RSS per peer, time to READY, control round trips, and the cost of one ban at
# 100,000 bans against the first ones. Each figure is the median
# (min-max) of interleaved runs beside a baseline measured in the same run (raw TCP and Unix
# socket copies, /bin/true, a warm connection) and their ratio. Prints a table; asserts nothing.
#   scripts/bench.sh [RUNS]      (default 3)
#   scripts/bench.sh --quick     (one run, small sizes: proves the suite works)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p p2pd -p p2pctl -p p2pd-e2e --bins
exec target/release/bench "$@"
