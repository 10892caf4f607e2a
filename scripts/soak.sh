#!/usr/bin/env bash
# A long soak: a mixed load on a release-build node (control clients, peers joining and leaving,
# gossip, blocks) with its RSS and open descriptors sampled; prints the samples and whether they
# level off (exit 1 if not). The test suite runs a short one.
#   scripts/soak.sh [SECONDS] [EVERY]     (default 600 s, a sample every 30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p p2pd -p p2pctl -p p2pd-e2e --bins
exec target/release/soak "$@"
