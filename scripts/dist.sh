#!/usr/bin/env bash
# Builds the release binaries, the man pages and completions, and both packages:
# target/debian/p2pd_*.deb (cargo-deb) and target/generate-rpm/p2pd-*.rpm (cargo-generate-rpm).
# Installs the two cargo tools when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null 2>&1 || cargo install --locked cargo-generate-rpm
cargo build --release --locked -p p2pd -p p2pctl
cargo xtask docs target/docs
cargo deb --no-build -p p2pd
cargo generate-rpm -p p2pd
ls -1 target/debian/*.deb target/generate-rpm/*.rpm
