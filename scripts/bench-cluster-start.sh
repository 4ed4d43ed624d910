#!/usr/bin/env bash
# Time `kvnode --role cluster` starting on a data set (issue 15): its three nodes recovered
# side by side (this tree) against one after another (BASELINE, a kvnode from before commit
# b1a7bb6, which started replica1, then replica2, then the primary):
#   1. the data set: a local cluster of this tree (fixed ports) loaded with KEYS keys of 100
#      bytes (kvbench --prefill), both replicas caught up (WAIT 2), stopped with SIGTERM;
#   2. ROUNDS rounds, the two binaries alternating (the baseline first in odd rounds): each
#      starts `kvnode --role cluster` on a fresh copy of the data set, and the time runs from
#      the start until all three nodes answer PING (each port polled every 10 ms: connect,
#      `PING`, `PONG`; a node binds its port before it recovers, so a connection made early
#      waits for the answer), then each node's INFO is checked for KEYS keys, and SIGTERM;
#   3. for reference, one node alone (this tree, --role primary on the primary's copy), the
#      same way: the least any cluster start could take.
# Prints a markdown table of medians (min–max) on stdout; one JSON line per run goes to
# target/bench/cluster-start-<time>.jsonl, the nodes' logs next to it. Every process it
# starts is stopped on every exit path.
#
# Knobs (environment): KEYS (1000000), ROUNDS (3), BASELINE (a kvnode binary; by default
# built from `git archive b1a7bb6~1` into target/bench-baseline, kept for the next run).
set -euo pipefail

cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
ROUNDS=${ROUNDS:-3}
DEADLINE=120 # seconds a cluster gets to load its data, or its replicas to catch up

# run, forget, cleanup, log, free_ports, until_true: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup cluster-start

log "building release binaries"
run cargo build --release --bins --quiet
KVNODE=target/release/kvnode KVBENCH=target/release/kvbench KVCLI=target/release/kvcli
if [[ -z ${BASELINE:-} ]]; then
    log "building the baseline (b1a7bb6~1) into target/bench-baseline"
    if [[ ! -e target/bench-baseline/src/Cargo.toml ]]; then
        mkdir -p target/bench-baseline/src
        git archive b1a7bb6~1 | tar -x -C target/bench-baseline/src
        # git archive dates every file at the commit: make them newer than any build output.
        find target/bench-baseline/src -type f -exec touch {} +
    fi
    (cd target/bench-baseline/src && run env CARGO_TARGET_DIR=../target \
        cargo build --release --bin kvnode --quiet)
    BASELINE=target/bench-baseline/target/release/kvnode
fi

# stop PID: SIGTERM, then wait for it to exit.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# answers PORT: whether the node on PORT answers PING over the line protocol.
answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\n' >&3 && read -r -t "$DEADLINE" reply <&3 &&
        [[ $reply == PONG ]]) 2>/dev/null
}

# info PORT: the node's INFO line.
info() { timeout 10 "$KVCLI" --port "$1" INFO 2>/dev/null || true; }

# start BINARY ROLE DATA-DIR: start a node (a cluster's primary) on $BASE. Sets PID.
start() {
    "$1" --role "$2" --listen "127.0.0.1:$BASE" --data-dir "$3" --fsync everysec \
        2>>"$OUT/cluster-start-$STAMP.log" &
    PID=$!
    PIDS+=("$PID")
}

# ---- 1. The data set.
free_ports 3
start "$KVNODE" cluster "$WORK/set"
WATCH=$PID until_true "the cluster to start" answers "$BASE"
log "loading $KEYS keys of 100 bytes"
run "$KVBENCH" --port "$BASE" --prefill --keyspace "$KEYS" --value-size 100 --conns 10 \
    --requests 1 --workload get >/dev/null
# holds_all PORT...: whether every node on PORT holds all the keys (each key was written once).
holds_all() {
    local port
    for port in "$@"; do [[ $(info "$port") == *" keys=$KEYS "* ]] || return 1; done
}
WATCH=$PID until_true "the replicas to catch up" holds_all "$BASE" "$((BASE + 1))" "$((BASE + 2))"
stop "$PID"
SET_KIB=$(du -sk "$WORK/set" | cut -f1)
log "data set: $KEYS keys, $SET_KIB KiB on disk for the three nodes"

# ---- 2 and 3. Timed starts.
declare -A TIMES # TIMES[label]: one time in ms per round, space-separated

# timed LABEL BINARY ROLE PORTS...: start BINARY as ROLE on a fresh copy of the data set and
# time it until every node in PORTS (offsets from $BASE) answers PING; record it under LABEL.
timed() {
    local label=$1 binary=$2 role=$3 started ms offset dir="$WORK/run"
    shift 3
    rm -rf "$dir"
    cp -a "$WORK/set" "$dir"
    [[ $role == cluster ]] || dir="$dir/primary"
    started=${EPOCHREALTIME/./}
    start "$binary" "$role" "$dir"
    for offset in "$@"; do
        WATCH=$PID POLL=0.01 until_true "$label to answer on $((BASE + offset))" \
            answers "$((BASE + offset))"
    done
    ms=$(((${EPOCHREALTIME/./} - started) / 1000))
    for offset in "$@"; do
        holds_all "$((BASE + offset))" ||
            log "WARNING: $label: the node on $((BASE + offset)) does not hold $KEYS keys"
    done
    stop "$PID"
    TIMES[$label]+="$ms "
    echo "{\"test\":\"$label\",\"round\":$ROUND,\"keys\":$KEYS,\"ms\":$ms,\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\"}" >>"$RAW"
    log "round $ROUND: $label $ms ms"
}

for ROUND in $(seq 1 "$ROUNDS"); do
    if ((ROUND % 2)); then
        timed sequential "$BASELINE" cluster 0 1 2
        timed parallel "$KVNODE" cluster 0 1 2
    else
        timed parallel "$KVNODE" cluster 0 1 2
        timed sequential "$BASELINE" cluster 0 1 2
    fi
    timed one-node "$KVNODE" primary 0
done

# summary LABEL: "median (min–max)" of its times.
summary() {
    printf '%s\n' ${TIMES[$1]} | sort -n | awk '{ v[NR] = $1 } END {
        printf "%d (%d–%d)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
median() { printf '%s\n' ${TIMES[$1]} | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "### --role cluster starting on $KEYS keys per node, until all three answer PING ($ROUNDS rounds)"
echo
echo "| start | ms, median (min–max) |"
echo "|---|---:|"
echo "| one after another (b1a7bb6~1) | $(summary sequential) |"
echo "| side by side (this tree) | $(summary parallel) |"
echo "| one node alone, for reference | $(summary one-node) |"
echo
awk -v s="$(median sequential)" -v p="$(median parallel)" \
    'BEGIN { printf "Side by side takes %.2f of the time one after another takes (medians).\n", p / s }'
