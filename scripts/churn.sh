#!/usr/bin/env bash
# A network under churn on a release build: NODES (default 50) p2pd processes on 127.0.1.x,
# joined through two bootstrap nodes, then WAVES (default 3) in which 20% of the ordinary nodes
# stop and start again without bootstrap peers. Prints convergence time, routing-table sizes,
# find-peer and dht get success and latency, gossip delivery and latency, rejoin time and RSS.
#   scripts/churn.sh [NODES] [WAVES]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p p2pd -p p2pctl -p p2pd-e2e --bins
exec target/release/churn "${1:-50}" "${2:-3}"
