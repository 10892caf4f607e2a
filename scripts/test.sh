#!/usr/bin/env bash
# Runs every test of the project on a machine that has only the Rust toolchain (as root): installs
# what the tests need, checks formatting, lints, alert rules, units and man pages, builds the
# binaries the end-to-end tests start, runs the unit and end-to-end tests, then builds and checks
# the packages and runs the system test in a booted systemd.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
# A run from a clean checkout gains nothing from incremental state, and it is the largest part of
# target/ (several GiB): CI machines have had little disk to spare.
export CARGO_INCREMENTAL=0

# Disk use at each stage, so a run that fills the disk says where.
disk() { echo "== disk after $1: $(du -sh target fuzz/target 2>/dev/null | awk '{printf "%s %s  ", $2, $1}')free $(df -h --output=avail . | tail -n 1 | tr -d ' ')"; }
disk start

# Interop tests run a js-libp2p peer on the machine's Node.js (20 or newer).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "error: Node.js 20+ and npm are needed for the js-libp2p interop tests" >&2
  exit 1
fi
npm install --prefix tests/interop/js --no-save --no-audit --no-fund --loglevel=error

# The unit checks use systemd-analyze (Debian's systemd package); the alert rules and the
# metrics output are checked with promtool (Debian's prometheus package).
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
# The NAT lab (tests/tests/lab.rs) builds network namespaces with ip and nft.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

promtool check rules packaging/prometheus/p2pd-alerts.yml
promtool test rules packaging/prometheus/p2pd-alerts.test.yml

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
  (cd fuzz && cargo fmt --check)
else
  echo "warning: rustfmt is not installed; skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "warning: clippy is not installed; skipping the lint check" >&2
fi

# The end-to-end tests start target/debug/p2pd, target/debug/p2pctl and the client example.
cargo build --workspace --bins --examples --locked
scripts/check-units.sh
scripts/check-docs.sh
cargo test --workspace --locked
disk tests

# The benchmark suite in its smoke mode, on the debug build just made: proves every figure can
# be measured (the figures themselves mean nothing here; scripts/bench.sh is the real run).
target/debug/bench --quick > target/bench-quick.txt 2>&1 || { cat target/bench-quick.txt; exit 1; }
tail -n 25 target/bench-quick.txt

# Every fuzz target for a bounded time from its seeds (0 crashes, or the run fails); the long
# runs are scripts/fuzz.sh with a longer time.
scripts/fuzz.sh 45
disk fuzzing
# The instrumented build is not needed again in this run (the corpus it grew stays in
# fuzz/corpus); its GiBs are given back before the release build and the system-test rootfs.
rm -rf fuzz/target

# Packages: .deb and .rpm built and checked, and the system test in a booted systemd.
scripts/check-packages.sh
disk packages

# The container image (offline build path) and the compose network on a real Docker daemon.
scripts/check-container.sh
disk container
