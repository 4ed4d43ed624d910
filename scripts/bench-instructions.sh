#!/usr/bin/env bash
# Count the user-space instructions a server spends per request, under valgrind's callgrind:
# one kvnode (--fsync everysec, no replicas) and one redis-server (appendonly yes, appendfsync
# everysec), each loaded with 10,000 keys of 64 bytes, then driven by REQUESTS requests of
# each workload (GET, SET) from 50 connections at pipeline 1 (`kvbench --proto resp`).
# Counters are zeroed after the load and dumped after the run, so only the measured requests
# count (all threads of the server, the kernel not at all).
#
# Unlike req/s, the count does not depend on what else the machine is doing: it repeats to
# within a fraction of a percent, which makes it the measure to use for small optimisations
# on a noisy machine. Prints a markdown table on stdout.
#
# Knobs (environment): REQUESTS (50000).
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-50000}
KEYS=10000

# run, forget, cleanup, log, need_packages: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup instructions

need_packages valgrind:valgrind redis-server:redis-server redis-cli:redis-tools ss:iproute2
log "building release binaries"
run cargo build --release --bins --quiet
KVNODE=target/release/kvnode KVBENCH=target/release/kvbench

# free_port: set PORT to a loopback port no socket uses now, below the ephemeral range.
free_port() {
    local low high first count
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    # Below the ephemeral range if there is room there, else above it.
    if ((low > 11000)); then first=10000 count=$((low - 10000)); else first=$((high + 1)) count=$((65535 - high)); fi
    ((count > 0)) || { log "no ports outside the ephemeral range"; return 1; }
    for _ in $(seq 1 100); do
        PORT=$((first + RANDOM % count))
        [[ -z $(ss -Htan "sport = :$PORT") ]] && return 0
    done
    log "no free port"
    return 1
}

# measure SYSTEM WORKLOAD: start SYSTEM under callgrind, load it, count WORKLOAD; set
# PER_REQUEST to the instructions per request. (Not run in $(...): a subshell would not share
# the process list that the EXIT trap stops.)
measure() {
    local system=$1 workload=$2 dir="$WORK/$1-$2" pid dump total
    mkdir -p "$dir"
    free_port
    if [[ $system == ours ]]; then
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" \
            "$KVNODE" --listen "127.0.0.1:$PORT" --data-dir "$dir/data" --fsync everysec \
            2>"$OUT/instructions-ours-$STAMP.log" &
    else
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" \
            redis-server --port "$PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
            --appendfsync everysec --save '' --daemonize no \
            >"$OUT/instructions-redis-$STAMP.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + 60))
    until redis-cli -p "$PORT" PING 2>/dev/null | grep -q PONG; do
        ((SECONDS < deadline)) || { log "$system did not start"; return 1; }
        kill -0 "$pid" 2>/dev/null || { log "$system exited"; return 1; }
        sleep 0.2
    done
    run "$KVBENCH" --port "$PORT" --proto resp --prefill --keyspace "$KEYS" --value-size 64 \
        --conns 10 --requests 1 >/dev/null
    callgrind_control -z "$pid" >/dev/null
    run "$KVBENCH" --port "$PORT" --proto resp --workload "$workload" --conns 50 --pipeline 1 \
        --requests "$REQUESTS" --keyspace "$KEYS" --value-size 64 >/dev/null
    callgrind_control -d "$pid" >/dev/null
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
    # The dump taken after the run is the first numbered part.
    dump=$(ls "$dir"/callgrind.*.1)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    PER_REQUEST=$((total / REQUESTS))
}

echo "### User-space instructions per request (callgrind, $REQUESTS requests, 50 connections, pipeline 1, 64-byte values)"
echo
echo "| workload | ours | Redis | ratio |"
echo "|---|---:|---:|---:|"
for workload in get set; do
    log "$workload: ours"
    measure ours "$workload"
    ours=$PER_REQUEST
    log "$workload: Redis"
    measure redis "$workload"
    redis=$PER_REQUEST
    ratio=$(awk -v a="$ours" -v b="$redis" 'BEGIN { printf "%.2f", a / b }')
    echo "| ${workload^^} | $ours | $redis | $ratio |"
done
