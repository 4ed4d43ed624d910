#!/usr/bin/env bash
# Benchmark kvnode's persistence with kvbench:
#   1. SET throughput and latency for each fsync policy (always, everysec, no) at 1, 10 and
#      50 connections;
#   2. SET latency during compactions: a prefilled node that compacts often, against the same
#      node with compaction effectively off.
# Prints a markdown table on stdout; the raw kvbench JSON lines (with the run's settings) and
# the node logs go to target/bench/. Every process it starts is stopped on every exit path.
#
# Knobs (environment): REQUESTS (20000 per fsync run), DURATION (20 s per compaction run),
# PREFILL_KEYS (200000), CONNS ("1 10 50").
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
DURATION=${DURATION:-20}
PREFILL_KEYS=${PREFILL_KEYS:-200000}
CONNS=${CONNS:-1 10 50}
STARTUP_DEADLINE=30 # seconds a node gets to log "listening"

# run, forget, cleanup, start_node, log: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup persistence

# Stop the node with SIGTERM and wait for it to exit.
stop_node() {
    local status=0
    kill -TERM "$NODE_PID"
    wait "$NODE_PID" || status=$?
    forget "$NODE_PID"
    ((status == 0)) || log "node exited with status $status (log: $NODE_LOG)"
}

# bench LABEL-JSON KVBENCH-FLAGS...: run kvbench against the node, append its JSON line
# (prefixed with the run's labels) to the raw file, and set RESULT to it.
bench() {
    local labels=$1 json status=0
    shift
    # Into a file, not $(...): bash could not run the trap while a command substitution runs.
    run target/release/kvbench --port "$NODE_PORT" --json "$@" >"$WORK/bench.json" || status=$?
    json=$(cat "$WORK/bench.json")
    if [[ $json != \{* ]]; then
        log "kvbench failed (status $status) with: $*"
        return 1
    fi
    ((status == 0)) || log "kvbench reported errors (status $status): $json"
    RESULT="{$labels,${json#\{}"
    echo "$RESULT" >>"$RAW"
}

# field JSON NAME: a number from a flat JSON object.
field() {
    [[ $1 =~ \"$2\":([0-9.]+) ]] && echo "${BASH_REMATCH[1]}"
}

ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

# One table row: throughput and latencies of RESULT.
row() {
    echo "$(field "$RESULT" rps) | $(ms "$(field "$RESULT" p50_us)") | $(ms "$(field "$RESULT" p99_us)") | $(ms "$(field "$RESULT" p999_us)") | $(ms "$(field "$RESULT" max_us)") | $(field "$RESULT" errors)"
}

log "building release binaries"
run cargo build --release --bins --quiet

# 1. fsync policies.
declare -A RPS
FSYNC_TABLE="| fsync | conns | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |
|---|---:|---:|---:|---:|---:|---:|---:|"
for policy in always everysec no; do
    start_node "fsync-$policy" --fsync "$policy"
    for conns in $CONNS; do
        log "fsync $policy, $conns connections, $REQUESTS SETs"
        bench "\"run\":\"fsync\",\"fsync\":\"$policy\"" --workload set --conns "$conns" \
            --pipeline 1 --requests "$REQUESTS" --keyspace 100000 --value-size 64
        RPS[$policy-$conns]=$(field "$RESULT" rps)
        FSYNC_TABLE+=$'\n'"| $policy | $conns | $(row) |"
    done
    stop_node
done

# 2. Latency during compaction, with compaction on and (practically) off.
COMPACT_TABLE="| compaction | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | compactions started / finished during the run | longest compaction ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in on off; do
    if [[ $mode == on ]]; then min=4194304; else min=1099511627776; fi
    start_node "compact-$mode" --fsync everysec --compact-min-bytes "$min" --compact-ratio 1
    log "compaction $mode: prefilling $PREFILL_KEYS keys of 100 bytes"
    run target/release/kvbench --port "$NODE_PORT" --prefill --keyspace "$PREFILL_KEYS" \
        --value-size 100 --conns 10 --pipeline 1 --requests 1 >/dev/null
    # Let a compaction the prefill started finish, so that the run measures its own.
    deadline=$((SECONDS + 60))
    while (($(grep -c 'compaction started' "$NODE_LOG") > $(grep -c 'compaction finished' "$NODE_LOG"))) &&
        ((SECONDS < deadline)); do sleep 0.1; done
    lines_before=$(wc -l <"$NODE_LOG")
    log "compaction $mode: SET for $DURATION s at 50 connections"
    bench "\"run\":\"compaction\",\"compaction\":\"$mode\",\"compact_min_bytes\":$min" \
        --workload set --conns 50 --pipeline 1 --duration "$DURATION" \
        --keyspace "$PREFILL_KEYS" --value-size 100
    during=$(tail -n +"$((lines_before + 1))" "$NODE_LOG")
    started=$(grep -c 'compaction started' <<<"$during" || true)
    finished=$(grep -c 'compaction finished' <<<"$during" || true)
    longest=$(awk 'match($0, /compaction finished.*duration_ms: [0-9]+/) {
        v = substr($0, RSTART, RLENGTH); sub(/.*duration_ms: /, "", v); if (v + 0 > m) m = v + 0
    } END { print m + 0 }' <<<"$during")
    echo "{\"run\":\"compaction-log\",\"compaction\":\"$mode\",\"started\":$started,\"finished\":$finished,\"longest_ms\":$longest}" >>"$RAW"
    COMPACT_TABLE+=$'\n'"| $mode | $(row) | $started / $finished | $longest |"
    stop_node
done

always=${RPS[always-50]:-}
everysec=${RPS[everysec-50]:-}
echo "### SET, $REQUESTS requests per run, pipeline 1, 64-byte values, keyspace 100000"
echo
echo "$FSYNC_TABLE"
echo
if [[ -n $always && -n $everysec ]]; then
    awk -v a="$always" -v e="$everysec" 'BEGIN {
        printf "At 50 connections, `always` reaches %.0f%% of `everysec` (target: at least 50%%).\n", 100 * a / e }'
    echo
fi
echo "### SET for $DURATION s at 50 connections, --fsync everysec, $PREFILL_KEYS prefilled keys, 100-byte values"
echo
echo "$COMPACT_TABLE"
echo
echo "Raw results: $RAW; node logs: $OUT/node-*-$STAMP.log"
