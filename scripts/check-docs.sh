#!/usr/bin/env bash
# Generates the man pages and completions from the clap definitions and checks that every page
# renders without a warning (groff -ww).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/docs
cargo xtask docs "$out"
for page in "$out"/man/*; do
  warnings=$(groff -ww -man -z "$page" 2>&1)
  if [ -n "$warnings" ]; then
    echo "$page does not render cleanly:" >&2
    echo "$warnings" >&2
    exit 1
  fi
done
echo "man pages render cleanly: $(ls "$out"/man | tr '\n' ' ')"
