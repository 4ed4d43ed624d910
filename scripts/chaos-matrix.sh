#!/usr/bin/env bash
# The results table of docs/reliability.md: every fault kind under every --fsync policy, for
# our node and for Redis, each a kvchaos run of the same length and seed, printed as Markdown
# rows with the command that reproduces each; then the failover cluster's table (--target
# cluster): what each fault of the primary cost, in safe mode and in the asynchronous mode.
#
#   scripts/chaos-matrix.sh [--seconds 30] [--seed 7] [--cluster-only]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
seed=7
cluster_only=no
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?}"; shift 2 ;;
        --seed) seed="${2:?}"; shift 2 ;;
        --cluster-only) cluster_only=yes; shift ;;
        *) echo "chaos-matrix.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet --bin kvnode --bin kvchaos
# The verdict of kvchaos run with "$@" into target/chaos/matrix/$1 (the rest are its
# arguments): its last line, and the failovers' line before it; the exit status in $status.
run() {
    local name=$1
    shift
    local out="target/chaos/matrix/$name"
    rm -rf "$out"
    status=0
    report=$(target/release/kvchaos "$@" --out "$out" 2>&1) || status=$?
    last=$(tail -1 <<<"$report")
    failovers=$(grep '^kvchaos: primary_faults=' <<<"$report" || true)
}
# Field $1 of line $2 (`name=value`).
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
# What the exit status says.
verdict() {
    case $status in
        0) echo valid ;;
        1) echo INVALID ;;
        *) echo "did not run: $last" ;;
    esac
}
cluster_row() {
    local fault=$1 replicas=$2
    local args=(--target cluster --min-replicas-to-write "$replicas" --fsync always --fault "$fault" --duration "$seconds" --seed "$seed")
    run "cluster-$replicas-$fault" "${args[@]}"
    echo "| $fault | $replicas | $(field operations "$last") | $(field primary_faults "$failovers") | $(field 'primary_again_ms(median\/worst)' "$failovers") | $(field moved "$failovers") | $(field 'write_unavailability_ms(median\/worst)' "$failovers") | $(field lost_acknowledged_writes "$last") | $(verdict) | \`target/release/kvchaos ${args[*]}\` |"
}
if [ "$cluster_only" = no ]; then
echo "| target | --fsync | fault | operations | faults | lost acknowledged writes | verdict | reproduce |"
echo "|---|---|---|---:|---:|---:|---|---|"
row() {
    local target=$1 fsync=$2 fault=$3
    local args=(--target "$target" --fsync "$fsync" --fault "$fault" --duration "$seconds" --seed "$seed")
    run "$target-$fsync-$fault" "${args[@]}"
    echo "| $target | $fsync | $fault | $(field operations "$last") | $(field faults "$last") | $(field lost_acknowledged_writes "$last") | $(verdict) | \`target/release/kvchaos ${args[*]}\` |"
}
for fault in kill pause partition disk-full slow-disk mixed; do
    for fsync in always everysec no; do
        row kvstore "$fsync" "$fault"
    done
    for fsync in always everysec no off; do
        row redis "$fsync" "$fault"
    done
done
echo
fi
echo "| fault | --min-replicas-to-write | operations | faults of the primary | time to a primary acknowledging again, ms (median/worst) | of which a new primary | write unavailability, ms (median/worst) | lost acknowledged writes | verdict | reproduce |"
echo "|---|---:|---:|---:|---|---:|---|---:|---|---|"
for fault in kill pause partition mixed; do
    cluster_row "$fault" 1
done
for fault in partition kill; do
    cluster_row "$fault" 0
done
