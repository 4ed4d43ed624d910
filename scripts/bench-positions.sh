#!/usr/bin/env bash
# What reading your own writes costs (issue 16), with kvbench, ours and Redis side by side:
#   ours: a primary and one replica, separate processes (--fsync everysec);
#   Redis: a primary and one replica (appendonly yes, appendfsync everysec).
# All over RESP, pipeline 1, at each connection count of CONNS_LIST, for ROUNDS rounds (the two
# systems alternating within each test, Redis first in odd rounds), DURATION s per run:
#   reads on the replica (ours): plain `GET`, and `GET key AFTER <token> <t>` with a token the
#     replica has long reached (the token's own cost);
#   writes on the primary: `SET`, and `SET` + `WAIT 1 <t>` (Redis's way to make a write safe);
#   write-then-read cycles (kvbench's ryw-* workloads): the write on the primary, then a read
#     of it on the replica: plain (no guarantee: how often it misses), with a token
#     (`SET` + `LASTPOS`, then `GET key AFTER <token> <t>`, or `WAITPOS` + `GET` pipelined; ours
#     only), or after `WAIT 1` (ours and Redis).
# Prints a markdown table of medians on stdout; the raw kvbench JSON lines (with labels) and the
# servers' logs go to target/bench/. Every process it starts is stopped on every exit path.
#
# Knobs (environment): ROUNDS (3), DURATION (3 s per run), CONNS_LIST ("1 50"), TIMEOUT (1000
# ms, of every WAIT, WAITPOS and AFTER).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNS_LIST=${CONNS_LIST:-1 50}
TIMEOUT=${TIMEOUT:-1000}
KEYSPACE=100000
VALUE=64
STARTUP_DEADLINE=30 # seconds a node gets to log "listening"
DEADLINE=60         # seconds for replicas to connect and catch up

# run, forget, cleanup, log, start_node, kvbench_json, need_packages, free_ports, until_true,
# med, sum: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup positions

need_packages redis-server:redis-server redis-cli:redis-tools
log "building release binaries"
run cargo build --release --bins --quiet
KVBENCH=target/release/kvbench KVCLI=target/release/kvcli

info() { timeout 5 "$KVCLI" --port "$1" INFO 2>/dev/null || true; }
rcli() { timeout 5 redis-cli -p "$1" "${@:2}" 2>/dev/null || true; }

# ---- Ours: a replica, then its primary.
start_node replica --role replica --fsync everysec
OURS_REPLICA=$NODE_PORT OURS_PIDS=$NODE_PID
start_node primary --fsync everysec --replica "127.0.0.1:$OURS_REPLICA"
OURS_PRIMARY=$NODE_PORT OURS_PIDS+=" $NODE_PID"
ours_synced() { [[ $(info "$OURS_PRIMARY") == *" connected_replicas=1 "* ]]; }
WATCH=$OURS_PIDS until_true "our primary to connect its replica" ours_synced

# ---- Redis: a primary and its replica.
free_ports 2
REDIS_PRIMARY=$BASE REDIS_REPLICA=$((BASE + 1)) REDIS_PIDS=""
for port in "$REDIS_PRIMARY" "$REDIS_REPLICA"; do
    replicaof=()
    [[ $port == "$REDIS_PRIMARY" ]] || replicaof=(--replicaof 127.0.0.1 "$REDIS_PRIMARY")
    mkdir -p "$WORK/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" --appendonly yes \
        --appendfsync everysec --save '' --daemonize no "${replicaof[@]}" \
        >>"$OUT/redis-$port-$STAMP.log" 2>&1 &
    PIDS+=("$!")
    REDIS_PIDS+=" $!"
done
redis_synced() {
    [[ $(rcli "$REDIS_PRIMARY" INFO replication) == *connected_slaves:1* ]] &&
        [[ $(rcli "$REDIS_REPLICA" INFO replication) == *master_link_status:up* ]]
}
WATCH=$REDIS_PIDS until_true "the Redis replica to sync" redis_synced
log "ours: primary $OURS_PRIMARY, replica $OURS_REPLICA; Redis: primary $REDIS_PRIMARY, replica $REDIS_REPLICA"

# ---- The keys the GETs read, on our replica; and a token it has reached before any GET.
run "$KVBENCH" --port "$OURS_PRIMARY" --proto resp --prefill --keyspace "$KEYSPACE" \
    --value-size "$VALUE" --conns 10 --requests 1 --workload get >/dev/null
TOKEN=$(printf 'PUT bench:token x\nLASTPOS\n' | timeout 5 "$KVCLI" --port "$OURS_PRIMARY" | tail -n1)
[[ $TOKEN == *:*:* ]] || { log "LASTPOS answered '$TOKEN'"; exit 1; }
replica_full() { [[ $(info "$OURS_REPLICA") == *" keys=$((KEYSPACE + 1)) "* ]]; }
WATCH=$OURS_PIDS until_true "our replica to hold the prefilled keys" replica_full
log "token for the GET AFTER runs: $TOKEN"

# Results: VALUES[system|test|conns|measure], one number per round, space-separated.
declare -A VALUES
add() { VALUES[$1]="${VALUES[$1]:-} $2"; }
field() { if [[ $1 =~ \"$2\":([0-9.]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }

# bench SYSTEM TEST CONNS PORT KVBENCH-FLAGS...: one kvbench run over RESP, its JSON line
# (labelled) appended to RAW and its numbers to VALUES.
bench() {
    local system=$1 test=$2 conns=$3 port=$4 m key
    shift 4
    kvbench_json "$system $test at $conns conns" --port "$port" --proto resp \
        --conns "$conns" --duration "$DURATION" --keyspace "$KEYSPACE" --value-size "$VALUE" \
        --wait-timeout "$TIMEOUT" "$@"
    echo "{\"system\":\"$system\",\"test\":\"$test\",\"round\":$ROUND,\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\",${JSON#\{}" >>"$RAW"
    key="$system|$test|$conns"
    for m in rps p50_us p99_us write_p50_us write_p99_us read_p50_us read_p99_us stale errors requests; do
        add "$key|$m" "$(field "$JSON" "$m")"
    done
    log "round $ROUND: $system $test, $conns conns: $(field "$JSON" rps)/s, p50 $(field "$JSON" p50_us) µs, p99 $(field "$JSON" p99_us) µs, stale $(field "$JSON" stale), errors $(field "$JSON" errors)"
}

# The tests: name, who runs it (ours, redis or both), whether it runs on the replica alone
# (replica) or on the primary (primary), and kvbench's flags.
TESTS=(
    "get|ours|replica|--workload get"
    "get-after|ours|replica|--workload get --after $TOKEN"
    "set|both|primary|--workload set"
    "set-wait|both|primary|--workload set-wait"
    "ryw-plain|both|primary|--workload ryw-plain"
    "ryw-after|ours|primary|--workload ryw-after"
    "ryw-waitpos|ours|primary|--workload ryw-waitpos"
    "ryw-wait|both|primary|--workload ryw-wait"
)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ROUND in $(seq 1 "$ROUNDS"); do
    if ((ROUND % 2)); then order="redis ours"; else order="ours redis"; fi
    for conns in $CONNS_LIST; do
        for t in "${TESTS[@]}"; do
            IFS='|' read -r test who where flags <<<"$t"
            for system in $order; do
                [[ $who == both || $who == "$system" ]] || continue
                if [[ $system == ours ]]; then
                    primary=$OURS_PRIMARY replica=$OURS_REPLICA
                else
                    primary=$REDIS_PRIMARY replica=$REDIS_REPLICA
                fi
                port=$primary
                [[ $where == primary ]] || port=$replica
                # shellcheck disable=SC2086 # the flags are words
                bench "$system" "$test" "$conns" "$port" $flags --replica "127.0.0.1:$replica"
            done
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ms() { [[ -z $1 ]] && echo "–" || awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }

echo "### Read your writes: $DURATION s per run, RESP, pipeline 1, 64-byte values, medians of $ROUNDS rounds"
echo
echo "Load average before: $LOAD_BEFORE; after: $LOAD_AFTER. Token of the get-after runs: \`$TOKEN\`."
echo
echo "| conns | test | system | ops/s | p50 ms | p99 ms | write step p50 / p99 ms | read step p50 / p99 ms | reads missing their write | errors |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
for conns in $CONNS_LIST; do
    for t in "${TESTS[@]}"; do
        IFS='|' read -r test who _ _ <<<"$t"
        for system in ours redis; do
            [[ $who == both || $who == "$system" ]] || continue
            k="$system|$test|$conns"
            steps="– | –"
            if [[ -n $(med "$k|write_p50_us") ]]; then
                steps="$(ms "$(med "$k|write_p50_us")") / $(ms "$(med "$k|write_p99_us")") | –"
            fi
            stale="–"
            if [[ $test == ryw-* ]]; then
                steps="$(ms "$(med "$k|write_p50_us")") / $(ms "$(med "$k|write_p99_us")") | $(ms "$(med "$k|read_p50_us")") / $(ms "$(med "$k|read_p99_us")")"
                stale=$(awk -v s="$(sum "$k|stale")" -v n="$(sum "$k|requests")" \
                    'BEGIN { printf "%.1f%%", (n > 0 ? 100 * s / n : 0) }')
            fi
            echo "| $conns | $test | $system | $(med "$k|rps") | $(ms "$(med "$k|p50_us")") | $(ms "$(med "$k|p99_us")") | $steps | $stale | $(sum "$k|errors") |"
        done
    done
done
echo
echo "ops/s: requests, or for set-wait and ryw-* whole cycles, per second. A cycle's p50/p99 is"
echo "its whole time; its write step runs on the primary, its read step on the replica."
echo "Reads missing their write: over all rounds; errors: summed over all rounds."
echo
echo "Raw results: $RAW"
