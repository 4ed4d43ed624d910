#!/usr/bin/env bash
# The results table of docs/reliability.md: every fault kind under every --fsync policy, for
# our node and for Redis, each a kvchaos run of the same length and seed, printed as Markdown
# rows with the command that reproduces each.
#
#   scripts/chaos-matrix.sh [--seconds 30] [--seed 7]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
seed=7
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?}"; shift 2 ;;
        --seed) seed="${2:?}"; shift 2 ;;
        *) echo "chaos-matrix.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet --bin kvnode --bin kvchaos
echo "| target | --fsync | fault | operations | faults | lost acknowledged writes | verdict | reproduce |"
echo "|---|---|---|---:|---:|---:|---|---|"
row() {
    local target=$1 fsync=$2 fault=$3
    local args=(--target "$target" --fsync "$fsync" --fault "$fault" --duration "$seconds" --seed "$seed")
    local out="target/chaos/matrix/$target-$fsync-$fault"
    rm -rf "$out"
    local last status=0
    last=$(target/release/kvchaos "${args[@]}" --out "$out" 2>&1 | tail -1) || status=$?
    local field
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$last"; }
    local verdict
    case $status in
        0) verdict=valid ;;
        1) verdict=INVALID ;;
        *) verdict="did not run: $last" ;;
    esac
    echo "| $target | $fsync | $fault | $(field operations) | $(field faults) | $(field lost_acknowledged_writes) | $verdict | \`target/release/kvchaos ${args[*]}\` |"
}
for fault in kill pause partition disk-full slow-disk mixed; do
    for fsync in always everysec no; do
        row kvstore "$fsync" "$fault"
    done
    for fsync in always everysec no off; do
        row redis "$fsync" "$fault"
    done
done
