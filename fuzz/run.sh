#!/usr/bin/env bash
# Runs every fuzz target (or those named after the seconds) for SECONDS
# each (default 30), from its committed corpus in corpus/<target>; new
# inputs go to a scratch directory, so the committed corpus stays small.
# A crash fails the run (once the targets running beside it are done);
# libFuzzer writes its input to artifacts/<target>/. Installs cargo-fuzz
# when it is missing. Stable
# toolchain: `--sanitizer none` (see docs/fuzzing.md).
#
#   fuzz/run.sh            # every target, 30 s each, one per core (what CI runs)
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
# Targets run side by side, one per core (FUZZ_JOBS to change it); each
# prints its summary when it is done.
jobs=${FUZZ_JOBS:-$(nproc)}

run_one() {
  local target=$1 scratch log
  scratch=$(mktemp -d)
  log="$scratch/log"
  if ! cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/" >&2
    return 1
  fi
  {
    printf '== %s, %ss\n' "$target" "$seconds"
    { grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true; } | tail -n 1
    { grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true; } | tr '\n' ' '
    echo
  }
  rm -rf "$scratch"
}

failed=0
running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ "$failed" = 0 ] || exit 1
