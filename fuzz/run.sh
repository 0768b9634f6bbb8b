#!/usr/bin/env bash
# Runs every fuzz target (or those named after the seconds) for SECONDS
# each (default 30), from its committed corpus in corpus/<target>; new
# inputs go to a scratch directory, so the committed corpus stays small.
# Stops at the first crash, whose input libFuzzer writes to
# artifacts/<target>/. Installs cargo-fuzz when it is missing. Stable
# toolchain: `--sanitizer none` (see docs/fuzzing.md).
#
#   fuzz/run.sh            # every target, 30 s each (what CI runs)
#   fuzz/run.sh 1200 token # one target, 20 minutes
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
flags=(--sanitizer none -O)
cargo fuzz build "${flags[@]}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
  scratch=$(mktemp -d)
  log="$scratch/log"
  printf '== %s, %ss\n' "$target" "$seconds"
  if ! cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  { grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true; } | tail -n 1
  { grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true; } | tr '\n' ' '
  echo
  rm -rf "$scratch"
done
