# Shared by the benchmark scripts (sourced, not run): process bookkeeping so that every
# process a script starts is stopped on every exit path, and starting a node on a free port.
#
# The sourcing script calls `bench_setup NAME` first, and defines STARTUP_DEADLINE if it
# starts nodes with start_node, and DEADLINE if it calls until_true.

# bench_setup NAME: the output folder and stamp, the raw results file
# ($OUT/NAME-$STAMP.jsonl, as RAW), a work folder, the process list, log(), and the traps that
# stop every process on every exit path.
bench_setup() {
    BENCH_NAME=$1
    OUT=target/bench
    mkdir -p "$OUT"
    STAMP=$(date +%Y%m%d-%H%M%S)
    RAW="$OUT/$BENCH_NAME-$STAMP.jsonl"
    : >"$RAW"
    WORK=$(mktemp -d)
    PIDS=() # every process started and not yet reaped
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

log() { echo "bench-$BENCH_NAME: $*" >&2; }

# Stop every process still running (TERM, then KILL after 15 s) and remove the data dirs.
cleanup() {
    local status=$? pid deadline
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 15))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}

forget() { # forget PID: it has been reaped
    local keep=() pid
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# Run a command in the background and wait for it, so that a signal to this script reaches
# the trap at once (bash defers traps while a foreground child runs) and the trap can stop it.
run() {
    local pid status=0
    "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || status=$?
    forget "$pid"
    return "$status"
}

# kvbench_json WHAT KVBENCH-FLAGS...: run target/release/kvbench --json with the flags and set
# JSON to the line it printed; fail (saying WHAT) if it printed none, and log it if it exited
# non-zero (errors in the load), which leaves its results usable.
kvbench_json() {
    local what=$1 status=0
    shift
    # Into a file, not $(...): bash could not run the trap while a command substitution runs.
    run target/release/kvbench --json "$@" >"$WORK/bench.json" || status=$?
    JSON=$(cat "$WORK/bench.json")
    if [[ $JSON != \{* ]]; then
        log "kvbench failed (status $status) on $what: $*"
        return 1
    fi
    ((status == 0)) || log "kvbench reported errors (status $status) on $what: $JSON"
}

# start_node NAME KVNODE-FLAGS...: start a node on a free port (port 0; the bound address is
# read from its log) with a fresh data dir. Sets NODE_PID, NODE_PORT and NODE_LOG.
start_node() {
    local name=$1 deadline
    shift
    NODE_LOG="$OUT/node-$name-$STAMP.log"
    target/release/kvnode --listen 127.0.0.1:0 --data-dir "$(mktemp -d -p "$WORK")/data" "$@" \
        2>"$NODE_LOG" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    deadline=$((SECONDS + STARTUP_DEADLINE))
    until grep -qs ' listening' "$NODE_LOG"; do
        if ! kill -0 "$NODE_PID" 2>/dev/null || ((SECONDS >= deadline)); then
            log "node $name did not start; its log:"
            cat "$NODE_LOG" >&2
            return 1
        fi
        sleep 0.05
    done
    NODE_PORT=$(grep -o 'addr: 127\.0\.0\.1:[0-9]*' "$NODE_LOG" | head -n1 | cut -d: -f3)
    [[ -n $NODE_PORT ]] || { log "no address in $NODE_LOG"; return 1; }
}

# need_packages COMMAND:PACKAGE...: install from Debian the package of every command missing.
need_packages() {
    local pair need=() sudo=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    ((${#need[@]})) || return 0
    log "installing ${need[*]} from Debian packages"
    ((EUID == 0)) || sudo=(sudo)
    run "${sudo[@]}" apt-get update -qq
    run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
}

# free_ports N: set BASE to a port such that BASE .. BASE+N-1 are used by no socket now. The
# ports come from below the kernel's ephemeral range, so that client connections (kvbench's,
# redis-benchmark's, replication links) cannot take them in the meantime.
free_ports() {
    local n=$1 i low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    for _ in $(seq 1 100); do
        BASE=$((10000 + RANDOM % (low - 10000 - n)))
        for ((i = 0; i < n; i++)); do
            if command -v ss >/dev/null; then
                [[ -z $(ss -Htan "sport = :$((BASE + i))") ]] || continue 2
            elif (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + i))") 2>/dev/null; then
                continue 2
            fi
        done
        return 0
    done
    log "no $n free ports in a row"
    return 1
}

# until_true WHAT COMMAND...: poll COMMAND every POLL s (0.05) until it succeeds, at most
# DEADLINE s; fail at once if a process in WATCH (space-separated PIDs) has exited.
until_true() {
    local what=$1 deadline=$((SECONDS + DEADLINE)) pid
    shift
    until "$@"; do
        for pid in ${WATCH:-}; do
            if ! kill -0 "$pid" 2>/dev/null; then
                log "process $pid exited while waiting for $what; see the logs in $OUT"
                return 1
            fi
        done
        if ((SECONDS >= deadline)); then
            log "timed out waiting for $what"
            return 1
        fi
        sleep "${POLL:-0.05}"
    done
}

# The scripts that keep one number per round in VALUES[KEY] (space-separated) summarise them:
# med KEY: their median ("" if none).
med() {
    printf '%s\n' ${VALUES[$1]:-} | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print ""; exit }
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# sum KEY: their sum (0 if none).
sum() { printf '%s\n' ${VALUES[$1]:-} | awk '{ s += $1 } END { print s + 0 }'; }
