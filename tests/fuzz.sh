#!/usr/bin/env bash
# The fuzz targets' short run (README "Fuzzing"), part of the test command: builds
# fuzz/ with cargo-fuzz on the nightly toolchain, then runs each target for a few
# seconds from its committed corpus (fuzz/corpus/TARGET, never written to: new
# inputs go to a temp dir). Fails on any crash, leaving the input under
# fuzz/artifacts/TARGET/. One line per target, then a total:
#   fuzz TARGET: N runs, 0 crashes
# BERTH_FUZZ_SECS sets the seconds per target (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned, like cargo-deb in tests/run.sh.
cargo_fuzz_version=0.13.2
secs=${BERTH_FUZZ_SECS:-10}
targets=(wire_decode job_params cert_check inventory_load outbox_read apply_jobs)

# cargo-fuzz wants nightly. Without one (a machine whose rustup cannot fetch it), the
# stable toolchain builds the same targets when allowed its unstable flags: nothing
# here needs a nightly-only feature (no sanitizer), only the -Z options cargo-fuzz passes.
toolchain=(+nightly)
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "tests/fuzz.sh: no nightly toolchain; building with stable (RUSTC_BOOTSTRAP=1)"
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# --dev (unoptimized, debug assertions and overflow checks on) and no sanitizer: the
# targets are safe Rust, and this build takes half the time of an optimized one.
# The long runs (README) build optimized.
started=$(date +%s)
cargo "${toolchain[@]}" fuzz build --dev --sanitizer none
built=$(date +%s)
bin=fuzz/target/x86_64-unknown-linux-gnu/debug

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crashes=0
total=0
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  set +e
  "$bin/$target" "$work/$target" "fuzz/corpus/$target" -max_total_time="$secs" -timeout=10 \
    -dict=fuzz/dicts/berth.dict -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
    >"$work/$target.log" 2>&1
  status=$?
  set -e
  runs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$work/$target.log")
  total=$((total + ${runs:-0}))
  if [ "$status" = 0 ]; then
    echo "fuzz $target: ${runs:-0} runs, 0 crashes"
  else
    crashes=$((crashes + 1))
    echo "fuzz $target: ${runs:-0} runs, 1 crash (exit $status); what it printed:"
    grep -v '^#[0-9]' "$work/$target.log" | tail -n 40
    echo "fuzz $target: the input is in fuzz/artifacts/$target/; reproduce with $bin/$target FILE"
  fi
done
echo "fuzz: ${#targets[@]} targets, $total runs, $crashes crashes (build $((built - started)) s, ${secs} s per target)"
[ "$crashes" = 0 ]
