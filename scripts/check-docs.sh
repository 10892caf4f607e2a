#!/usr/bin/env bash
# Generates the man pages and completions from the clap definitions and checks that every page
# renders without a warning (groff -ww), has the sections an operator looks for, and refers
# only to pages that exist: the ones shipped here or the system's own (systemctl, journalctl).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/docs
cargo xtask docs "$out"
shipped=$(cd "$out/man" && ls | sed -E 's/^(.*)\.([1-8])$/\1(\2)/')
external='systemctl(1) journalctl(1)'
for page in "$out"/man/*; do
  warnings=$(groff -ww -man -z "$page" 2>&1)
  if [ -n "$warnings" ]; then
    echo "$page does not render cleanly:" >&2
    echo "$warnings" >&2
    exit 1
  fi
  # References: NAME(N) in running text and ".BR NAME (N)".
  refs=$(sed -E 's/\\f[BIRP]//g; s/\\-/-/g; s/^\.BR ([^ ]+) \(([1-8])\).*/\1(\2)/' "$page" |
    grep -oE '[a-z][a-z0-9_.+-]*\([1-8]\)' | sort -u || true)
  for ref in $refs; do
    if ! grep -qxF "$ref" <<<"$shipped"$'\n'"$(tr ' ' '\n' <<<"$external")"; then
      echo "$page refers to $ref, which is not shipped" >&2
      exit 1
    fi
  done
done
for section in SIGNALS FILES ENVIRONMENT 'EXIT STATUS' 'SEE ALSO'; do
  grep -qx "\.SH $section" "$out/man/p2pd.8" || { echo "p2pd(8) has no $section section" >&2; exit 1; }
done
for section in ENVIRONMENT FILES 'EXIT STATUS'; do
  grep -qx "\.SH $section" "$out/man/p2pctl.1" || { echo "p2pctl(1) has no $section section" >&2; exit 1; }
done
# Files the pages name under /usr/share are in the packages.
for f in $(grep -ohE '/usr/share/[A-Za-z0-9_./\\-]+' "$out"/man/* | sed 's/\\-/-/g; s/[.,]$//' | sort -u); do
  grep -qF "${f#/}" p2pd/Cargo.toml || { echo "the man pages name $f, which no package ships" >&2; exit 1; }
done
echo "man pages render cleanly, have their sections and no dangling references: $(ls "$out"/man | tr '\n' ' ')"
