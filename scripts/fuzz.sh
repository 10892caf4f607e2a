#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets (fuzz/fuzz_targets, cargo-fuzz + libFuzzer) on the stable
# toolchain. Usage:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 600 s each, every target)
# CI runs `scripts/fuzz.sh 45`. Each target starts from its committed seeds (fuzz/seeds/T) and
# the corpus earlier runs grew (fuzz/corpus/T, not committed); a crash leaves the input in
# fuzz/artifacts/T/ and fails the run. Reproduce one with
#   cd fuzz && cargo fuzz run --sanitizer none T artifacts/T/crash-...
# The last lines printed are one summary row per target: executions, corpus size, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(control_frame control_session block_wire config state_files)
fi

# libFuzzer itself is C++ (built by libfuzzer-sys); cargo-fuzz drives the instrumented build.
if ! command -v g++ >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi

cd fuzz
# The targets' scratch directories (a daemon's data dir and socket, state files) go here,
# emptied first: never beside anything else in /tmp.
export TMPDIR="$PWD/target/scratch"
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
# Without a sanitizer nothing needs nightly: coverage instrumentation is a stable codegen pass.
cargo fuzz build --sanitizer none

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" target/logs
  # Not in artifacts/: cargo-fuzz names the newest file there as the failing input.
  log="target/logs/$t.log"
  stamp="target/logs/$t.started"
  touch "$stamp"
  echo "== $t: ${secs}s"
  status=0
  # -timeout: an input that takes longer than 30 s is a hang (a finding, like a crash).
  cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(find "artifacts/$t" -type f -newer "$stamp" \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
    # The panic and where, not the input's bytes.
    grep -a -m1 -A12 -E "panicked at|ERROR: libFuzzer" "$log" | cut -c1-300 || tail -n 20 "$log"
    ls -l "artifacts/$t"
  fi
  summary+=("$(printf '%-16s %12s %8s %8s' "$t" "${execs:-?}" "$corpus" "$crashes")")
done

printf '%-16s %12s %8s %8s\n' target executions corpus crashes
printf '%s\n' "${summary[@]}"
exit "$failed"
