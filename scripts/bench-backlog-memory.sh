#!/usr/bin/env bash
# The primary's memory at default settings (issue 18): a primary and two replicas as three
# processes, ours (this tree's kvnode, and BEFORE, another kvnode binary, if given) and Redis
# (appendonly yes, appendfsync everysec), each loaded with redis-benchmark
# `-t set -r KEYS -d 64 -n REQUESTS -c 50 -P 16`, the replicas waited for, 3 s of rest (our
# replicas acknowledge every second, jemalloc purges after 1 s), then the primary's VmRSS and,
# for ours, the backlog it holds (INFO repl_backlog_bytes).
# One line per system on stdout; the nodes' logs go to target/bench. Every process it starts is
# stopped on every exit path.
#
# Knobs (environment): KEYS (100000), REQUESTS (2000000), BEFORE (a kvnode binary), FLAGS
# (extra kvnode flags for this tree's run).
set -euo pipefail

cd "$(dirname "$0")/.."
KEYS=${KEYS:-100000}
REQUESTS=${REQUESTS:-2000000}
STARTUP_DEADLINE=30
DEADLINE=120

# run, forget, cleanup, log, free_ports, until_true, need_packages: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup backlog-memory
need_packages redis-server:redis-server redis-benchmark:redis-tools

rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
field() { redis-cli -p "$1" INFO | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }
caught_up() { # ours: both replicas streaming with nothing left to acknowledge
    local info
    info=$(redis-cli -p "$1" INFO | tr -d '\r')
    [[ $(grep -c '^replica[0-9]_state:streaming$' <<<"$info") == 2 ]] &&
        [[ $(grep -c '^replica[0-9]_lag_offsets:0$' <<<"$info") == 2 ]]
}
load() { run redis-benchmark -p "$1" -t set -r "$KEYS" -d 64 -n "$REQUESTS" -c 50 -P 16 -q >/dev/null; }

# ours NAME BINARY FLAGS...: a primary and two replicas of BINARY, loaded; prints the line.
ours() {
    local name=$1 bin=$2 p0 p1 p2 pids=() i
    shift 2
    free_ports 3
    p0=$BASE p1=$((BASE + 1)) p2=$((BASE + 2))
    for i in 1 2; do
        "$bin" --role replica --listen "127.0.0.1:$((BASE + i))" --fsync everysec \
            --data-dir "$(mktemp -d -p "$WORK")" "$@" 2>"$OUT/$name-replica$i-$STAMP.log" &
        pids+=($!)
        PIDS+=($!)
    done
    "$bin" --listen "127.0.0.1:$p0" --fsync everysec --data-dir "$(mktemp -d -p "$WORK")" \
        --replica "127.0.0.1:$p1" --replica "127.0.0.1:$p2" "$@" 2>"$OUT/$name-primary-$STAMP.log" &
    pids+=($!)
    PIDS+=($!)
    WATCH="${pids[*]}" until_true "$name to stream" caught_up "$p0"
    load "$p0"
    WATCH="${pids[*]}" until_true "$name's replicas to catch up" caught_up "$p0"
    sleep 3 # rest, as described above: not a wait for a condition
    echo "$name: primary RSS $(rss_mib "${pids[2]}") MiB, backlog $(field "$p0" repl_backlog_bytes) B, keys $(field "$p0" keys)"
    for i in "${pids[@]}"; do kill -TERM "$i"; wait "$i" 2>/dev/null || true; forget "$i"; done
}

redis() {
    local pids=() i dir
    free_ports 3
    for i in 0 1 2; do
        dir=$(mktemp -d -p "$WORK")
        local extra=()
        ((i == 0)) || extra=(--replicaof 127.0.0.1 "$BASE")
        redis-server --port "$((BASE + i))" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
            --appendfsync everysec --save '' "${extra[@]}" >"$OUT/redis$i-$STAMP.log" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    WATCH="${pids[*]}" until_true "redis replicas" \
        bash -c "[[ \$(redis-cli -p $BASE INFO replication | grep -c 'state=online') == 2 ]]"
    load "$BASE"
    sleep 3
    echo "redis: primary RSS $(rss_mib "${pids[0]}") MiB, backlog $(field "$BASE" repl_backlog_histlen) B"
    for i in "${pids[@]}"; do kill -TERM "$i"; wait "$i" 2>/dev/null || true; forget "$i"; done
}

run cargo build --release --bin kvnode --quiet
[[ -z ${BEFORE:-} ]] || ours before "$BEFORE"
# shellcheck disable=SC2086 # FLAGS is a list of flags
ours after target/release/kvnode ${FLAGS:-}
redis
