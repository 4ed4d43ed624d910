#!/usr/bin/env bash
# The results table of docs/reliability.md: every fault kind under every --fsync policy, for
# our node and for Redis, each a kvchaos run of the same length and seed, printed as Markdown
# rows with the command that reproduces each; then the failover cluster's table (--target
# cluster): what each fault of the primary cost, in safe mode and in the asynchronous mode;
# then the read-your-writes table (--read-your-writes): clients reading from the replicas
# with position tokens, under faults of the replicas or of any node, and the same clients
# leaving the token out (a deliberate bug the checker must catch).
#
#   scripts/chaos-matrix.sh [--seconds 30] [--seed 7] [--cluster-only | --read-your-writes-only]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
seed=7
cluster_only=no
ryw_only=no
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?}"; shift 2 ;;
        --seed) seed="${2:?}"; shift 2 ;;
        --cluster-only) cluster_only=yes; shift ;;
        --read-your-writes-only) ryw_only=yes; shift ;;
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
    tokens=$(grep '^kvchaos: token_reads=' <<<"$report" || true)
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
ryw_row() {
    local target=$1 fault=$2 aim=$3 mode=$4
    local args=(--target "$target" --fsync always --fault "$fault" --fault-target "$aim" --read-your-writes "$mode" --duration "$seconds" --seed "$seed")
    run "ryw-$target-$mode-$aim-$fault" "${args[@]}"
    echo "| $target | $mode | $fault | $aim | $(field operations "$last") | $(field faults "$last") | $(field token_reads "$tokens") | $(field by_replica "$tokens") | $(field timeout "$tokens") | $(field nohistory "$tokens") | $(field no_answer "$tokens") | $(field unreachable "$tokens") | $(field fell_back_to_primary "$tokens") | $(field read_your_writes_violations "$last") | $(field monotonic_read_violations "$last") | $(verdict) | \`target/release/kvchaos ${args[*]}\` |"
}
ryw_table() {
    echo "| target | reads | fault | --fault-target | operations | faults | token reads | answered by the replica | TIMEOUT | NOHISTORY | no answer | unreachable | fell back to the primary | read-your-writes violations | monotonic read violations | verdict | reproduce |"
    echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    for fault in kill pause partition; do
        ryw_row kvstore "$fault" replicas tokens
    done
    for fault in kill pause mixed; do
        ryw_row kvstore "$fault" any tokens
    done
    for fault in kill pause partition; do
        ryw_row kvstore "$fault" replicas without-tokens
    done
    for fault in kill pause partition; do
        ryw_row cluster "$fault" any tokens
    done
    ryw_row cluster kill replicas tokens
    ryw_row cluster kill replicas without-tokens
}
if [ "$ryw_only" = yes ]; then
    ryw_table
    exit 0
fi
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
if [ "$cluster_only" = no ]; then
    echo
    ryw_table
fi
