#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ under libFuzzer (cargo-fuzz), each for a fixed time, on the
# stable toolchain: `--sanitizer none` is what needs no nightly (docs/fuzzing.md says why).
#
#   scripts/fuzz.sh                 every target, 30 s each (what CI runs)
#   scripts/fuzz.sh 600 resp stream these targets, ten minutes each
#   FUZZ_SEED=0 scripts/fuzz.sh     a new random seed each run, instead of the fixed one
#
# New inputs a run finds go to target/fuzz-corpus/<target> (kept between runs on this machine,
# never committed); the seeds in fuzz/corpus/<target> are only read. An input that breaks a
# property stops the run, is saved under fuzz/artifacts/<target>/, and is printed (base64);
# docs/fuzzing.md says how to turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
seed=${FUZZ_SEED:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

flags=(--sanitizer none --features libfuzzer)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build "${flags[@]}"
mkdir -p target/fuzz-logs
for target in "${targets[@]}"; do
    scratch="target/fuzz-corpus/$target"
    log="target/fuzz-logs/$target.log"
    mkdir -p "$scratch"
    echo "fuzzing $target for ${seconds}s (log: $log)"
    if ! cargo fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -seed="$seed" \
        -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 80 "$log"
        echo "fuzz target $target broke a property: see above, and docs/fuzzing.md"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
done
