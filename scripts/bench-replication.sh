#!/usr/bin/env bash
# Benchmark what replication costs a primary, and how far behind its replicas are, with kvbench:
#   a. a primary with no replicas (--fsync everysec) under a SET load;
#   b. a primary streaming to two replicas under the same load, with kvbench's --lag-probe
#      timing how long after the primary's OK a write is visible on the first replica; after
#      the load, DIGEST on all three nodes must become equal (convergence).
# (a) and (b) alternate for ROUNDS rounds, so that a disturbance on the machine hits both.
# Prints a markdown table on stdout; the raw kvbench JSON lines (with the run's labels) and the
# node logs go to target/bench/. Every process it starts is stopped on every exit path.
#
# Knobs (environment): ROUNDS (3), DURATION (10 s per load run), CONNS (50).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
STARTUP_DEADLINE=30  # seconds a node gets to log "listening"
REPLICAS_DEADLINE=30 # seconds the primary gets to report connected_replicas=2
CONVERGE_DEADLINE=60 # seconds the three DIGEST lines get to become equal after the load

# run, forget, cleanup, start_node, kvbench_json, log: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup replication

# stop_node PID LOG: stop a node with SIGTERM and wait for it to exit.
stop_node() {
    local status=0
    kill -TERM "$1"
    wait "$1" || status=$?
    forget "$1"
    ((status == 0)) || log "node exited with status $status (log: $2)"
}

# compactions LOG: how many compactions a node finished (each rewrites its whole snapshot).
compactions() {
    grep -c 'compaction finished' "$1" || true
}

# ask PORT COMMAND: one kvcli command, its reply on stdout (empty if the node did not answer
# within 5 s; `timeout` keeps a stuck node from holding the script and its trap).
ask() {
    timeout 5 target/release/kvcli --port "$1" "$2" 2>/dev/null || true
}

# bench PORT LABEL-JSON KVBENCH-FLAGS...: run the SET load against the node, append its JSON
# line (prefixed with the run's labels) to the raw file, and set RESULT to it.
bench() {
    local port=$1 labels=$2
    shift 2
    kvbench_json "the SET load" --port "$port" --workload set --conns "$CONNS" \
        --pipeline 1 --duration "$DURATION" --keyspace 100000 --value-size 64 "$@"
    RESULT="{$labels,${JSON#\{}"
    echo "$RESULT" >>"$RAW"
}

# field JSON NAME: a number from a flat JSON object (empty if it is not there).
field() {
    if [[ $1 =~ \"$2\":([0-9.]+) ]]; then echo "${BASH_REMATCH[1]}"; fi
}

ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

# summary VALUES...: "median (min–max)" of numbers, each printed with FORMAT (printf, %.0f).
summary() {
    printf '%s\n' "$@" | sort -g | awk -v fmt="${FORMAT:-%.0f}" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "–"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf fmt " (" fmt "–" fmt ")\n", m, v[1], v[NR]
        }'
}

log "building release binaries"
run cargo build --release --bins --quiet

TABLE="| round | req/s, 0 replicas | req/s, 2 replicas | cost of replication | p99 ms, 0 / 2 replicas | lag p50 µs | lag p99 µs | lag p99.9 µs | lag max µs | probes (GETs each) | converged after | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
RPS0=() RPS2=() COST=() P99_0=() P99_2=() LAG50=() LAG99=() LAG999=() LAGMAX=()
for round in $(seq 1 "$ROUNDS"); do
    # a. No replicas.
    start_node "r$round-alone" --fsync everysec
    log "round $round: primary alone, SET for $DURATION s at $CONNS connections"
    bench "$NODE_PORT" "\"run\":\"alone\",\"round\":$round,\"replicas\":0"
    alone=$RESULT
    stop_node "$NODE_PID" "$NODE_LOG"
    echo "{\"run\":\"alone-log\",\"round\":$round,\"compactions\":$(compactions "$NODE_LOG")}" >>"$RAW"

    # b. Two replicas, then the primary (which retries until they are there anyway).
    start_node "r$round-replica1" --role replica --fsync everysec
    r1_pid=$NODE_PID r1_port=$NODE_PORT r1_log=$NODE_LOG
    start_node "r$round-replica2" --role replica --fsync everysec
    r2_pid=$NODE_PID r2_port=$NODE_PORT r2_log=$NODE_LOG
    start_node "r$round-primary" --fsync everysec \
        --replica "127.0.0.1:$r1_port" --replica "127.0.0.1:$r2_port"
    p_pid=$NODE_PID p_port=$NODE_PORT p_log=$NODE_LOG
    deadline=$((SECONDS + REPLICAS_DEADLINE))
    until [[ $(ask "$p_port" INFO) == *" connected_replicas=2 "* ]]; do
        if ((SECONDS >= deadline)); then
            log "the primary did not report connected_replicas=2 within ${REPLICAS_DEADLINE} s: $(ask "$p_port" INFO)"
            exit 1
        fi
        sleep 0.1
    done
    log "round $round: primary with 2 replicas, SET for $DURATION s at $CONNS connections, lag probe on replica 1"
    bench "$p_port" "\"run\":\"replicated\",\"round\":$round,\"replicas\":2" \
        --lag-probe "127.0.0.1:$r1_port"
    replicated=$RESULT
    info_after=$(ask "$p_port" INFO)

    # Convergence: the same DIGEST line (hash, offset, keys) on all three nodes.
    started=$(date +%s%N)
    converged=false
    deadline=$((SECONDS + CONVERGE_DEADLINE))
    while ((SECONDS < deadline)); do
        d0=$(ask "$p_port" DIGEST) d1=$(ask "$r1_port" DIGEST) d2=$(ask "$r2_port" DIGEST)
        if [[ $d0 == digest=* && $d0 == "$d1" && $d0 == "$d2" ]]; then
            converged=true
            break
        fi
        sleep 0.1
    done
    waited=$((($(date +%s%N) - started) / 1000000))
    echo "{\"run\":\"converge\",\"round\":$round,\"converged\":$converged,\"waited_ms\":$waited,\"primary\":\"$d0\",\"replica1\":\"$d1\",\"replica2\":\"$d2\",\"info_after_load\":\"$info_after\"}" >>"$RAW"
    if $converged; then
        log "round $round: converged ($d0)"
        conv="yes, after $waited ms"
    else
        log "round $round: NOT converged after ${CONVERGE_DEADLINE} s: primary $d0 / replica1 $d1 / replica2 $d2"
        conv="**no** (${CONVERGE_DEADLINE} s)"
    fi
    stop_node "$p_pid" "$p_log"
    stop_node "$r1_pid" "$r1_log"
    stop_node "$r2_pid" "$r2_log"
    echo "{\"run\":\"replicated-log\",\"round\":$round,\"compactions_primary\":$(compactions "$p_log"),\"compactions_replica1\":$(compactions "$r1_log"),\"compactions_replica2\":$(compactions "$r2_log")}" >>"$RAW"

    rps0=$(field "$alone" rps) rps2=$(field "$replicated" rps)
    cost=$(awk -v a="$rps0" -v b="$rps2" 'BEGIN { printf "%.1f", 100 * (1 - b / a) }')
    RPS0+=("$rps0") RPS2+=("$rps2") COST+=("$cost")
    P99_0+=("$(ms "$(field "$alone" p99_us)")") P99_2+=("$(ms "$(field "$replicated" p99_us)")")
    LAG50+=("$(field "$replicated" lag_p50_us)") LAG99+=("$(field "$replicated" lag_p99_us)")
    LAG999+=("$(field "$replicated" lag_p999_us)") LAGMAX+=("$(field "$replicated" lag_max_us)")
    probes=$(field "$replicated" lag_probes)
    polls=$(awk -v n="$probes" -v g="$(field "$replicated" lag_polls)" 'BEGIN { printf "%.2f", g / (n > 0 ? n : 1) }')
    errors="$(field "$alone" errors) / $(field "$replicated" errors) + $(field "$replicated" lag_errors)"
    TABLE+=$'\n'"| $round | $rps0 | $rps2 | $cost% | ${P99_0[-1]} / ${P99_2[-1]} | ${LAG50[-1]} | ${LAG99[-1]} | ${LAG999[-1]} | ${LAGMAX[-1]} | $probes ($polls) | $conv | $errors |"
done

echo "### SET for $DURATION s at $CONNS connections, pipeline 1, 64-byte values, keyspace 100000, --fsync everysec"
echo
echo "$TABLE"
echo
echo "Cost of replication = 1 − (req/s with 2 replicas) / (req/s alone), in the same round."
echo "Errors: load errors alone / with replicas + lag-probe failures."
echo
echo "| over $ROUNDS rounds: median (range) | value |"
echo "|---|---:|"
echo "| req/s, 0 replicas | $(summary "${RPS0[@]}") |"
echo "| req/s, 2 replicas | $(summary "${RPS2[@]}") |"
echo "| cost of replication, % | $(FORMAT=%.1f summary "${COST[@]}") |"
echo "| p99 ms, 0 replicas | $(FORMAT=%.2f summary "${P99_0[@]}") |"
echo "| p99 ms, 2 replicas | $(FORMAT=%.2f summary "${P99_2[@]}") |"
echo "| lag p50 µs | $(summary "${LAG50[@]}") |"
echo "| lag p99 µs | $(summary "${LAG99[@]}") |"
echo "| lag p99.9 µs | $(summary "${LAG999[@]}") |"
echo "| lag max µs | $(summary "${LAGMAX[@]}") |"
echo
echo "Raw results: $RAW; node logs: $OUT/node-r*-$STAMP.log"
