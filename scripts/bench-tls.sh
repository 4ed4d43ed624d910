#!/usr/bin/env bash
# What TLS costs (issue 17), ours and Redis side by side, with kvbench over RESP:
#   ours: one kvnode with a plain port and a TLS port beside it (--tls-port), and one that
#     speaks TLS only on its client port (--tls-cert and --tls-key, no --tls-port), both
#     --fsync everysec;
#   Redis: one redis-server with a plain port and a tls-port (appendonly yes, everysec).
# SET and GET, 50 connections, pipeline 1 and 16, keyspace 100000 (prefilled), 64-byte values,
# ROUNDS rounds with the five ways in alternating order, DURATION s per run; the TLS handshakes
# happen before kvbench's clock starts, so this is the cost of encrypting the traffic.
# The certificates are made for the run with openssl (an ECDSA P-256 CA and a server
# certificate for 127.0.0.1, as the tests' rcgen ones); kvbench trusts the CA (--tls-ca).
# Prints a markdown table of medians on stdout; the raw kvbench JSON lines (with labels) and the
# servers' logs go to target/bench/. Every process it starts is stopped on every exit path.
#
# Knobs (environment): ROUNDS (3), DURATION (3 s per run).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNS=50
KEYSPACE=100000
VALUE=64
STARTUP_DEADLINE=30 # seconds a node gets to log "listening"
DEADLINE=60         # seconds a server gets to answer on its TLS port

# run, forget, cleanup, log, start_node, kvbench_json, need_packages, free_ports, until_true,
# med, sum: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup tls

need_packages redis-server:redis-server redis-cli:redis-tools openssl:openssl
log "building release binaries"
run cargo build --release --bins --quiet
KVBENCH=target/release/kvbench KVCLI=target/release/kvcli

# ---- Certificates: a CA, and a certificate it signs for 127.0.0.1 and localhost.
CERTS=$WORK/certs
mkdir -p "$CERTS"
make_certs() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" -days 2 \
        -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE
    openssl req "${ec[@]}" -keyout "$CERTS/node.key" -out "$CERTS/node.csr" -subj /CN=node
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$CERTS/ext"
    openssl x509 -req -in "$CERTS/node.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -out "$CERTS/node.crt" -days 2 -extfile "$CERTS/ext"
}
make_certs 2>"$OUT/tls-certs-$STAMP.log"
CA=$CERTS/ca.crt
SERVER_TLS=(--tls-cert "$CERTS/node.crt" --tls-key "$CERTS/node.key")
CLIENT_TLS=(--tls --tls-ca "$CA")

# ---- Ours: plain with a TLS port beside it (the system picks it; the node logs it), and TLS
# only.
start_node both --fsync everysec "${SERVER_TLS[@]}" --tls-port 0
OURS_PORT=$NODE_PORT OURS_PIDS=$NODE_PID
OURS_TLS_PORT=$(grep -o 'tls_port: [0-9]*' "$NODE_LOG" | head -n1 | cut -d' ' -f2)
[[ -n $OURS_TLS_PORT ]] || { log "no tls_port in $NODE_LOG"; exit 1; }
start_node tls-only --fsync everysec "${SERVER_TLS[@]}"
OURS_ONLY_PORT=$NODE_PORT OURS_PIDS+=" $NODE_PID"

# ---- Redis: a plain port and a TLS port (clients are not asked for certificates).
free_ports 2
REDIS_PORT=$BASE REDIS_TLS_PORT=$((BASE + 1))
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
    --tls-cert-file "$CERTS/node.crt" --tls-key-file "$CERTS/node.key" \
    --tls-ca-cert-file "$CA" --tls-auth-clients no --dir "$WORK/redis" --appendonly yes \
    --appendfsync everysec --save '' --daemonize no >>"$OUT/redis-tls-$STAMP.log" 2>&1 &
PIDS+=("$!")
REDIS_PIDS=$!

# tls_pong PORT: the server on PORT answers a PING over TLS (kvcli's line, Redis's inline).
tls_pong() { [[ $(timeout 5 "$KVCLI" --port "$1" "${CLIENT_TLS[@]}" PING 2>/dev/null) == *PONG* ]]; }
for port in "$OURS_TLS_PORT" "$OURS_ONLY_PORT"; do
    WATCH=$OURS_PIDS until_true "our TLS port $port" tls_pong "$port"
done
WATCH=$REDIS_PIDS until_true "Redis's TLS port" tls_pong "$REDIS_TLS_PORT"
log "ours: plain $OURS_PORT + TLS $OURS_TLS_PORT, TLS only $OURS_ONLY_PORT; Redis: plain $REDIS_PORT + TLS $REDIS_TLS_PORT"

# The five ways to talk: name|port|kvbench's TLS flags.
WAYS=(
    "ours-plain|$OURS_PORT|"
    "ours-tls-port|$OURS_TLS_PORT|${CLIENT_TLS[*]}"
    "ours-tls-only|$OURS_ONLY_PORT|${CLIENT_TLS[*]}"
    "redis-plain|$REDIS_PORT|"
    "redis-tls|$REDIS_TLS_PORT|${CLIENT_TLS[*]}"
)

# ---- The keys the GETs read: each server loaded once (the TLS-only node over TLS).
for way in ours-plain ours-tls-only redis-plain; do
    for w in "${WAYS[@]}"; do
        IFS='|' read -r name port flags <<<"$w"
        [[ $name == "$way" ]] || continue
        # shellcheck disable=SC2086 # the flags are words
        run "$KVBENCH" --port "$port" $flags --proto resp --prefill --keyspace "$KEYSPACE" \
            --value-size "$VALUE" --conns 10 --requests 1 --workload get >/dev/null
    done
done

# Results: VALUES[way|test|measure], one number per round, space-separated.
declare -A VALUES
add() { VALUES[$1]="${VALUES[$1]:-} $2"; }
field() { if [[ $1 =~ \"$2\":([0-9.]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }

# bench WAY TEST PORT KVBENCH-FLAGS...: one kvbench run over RESP, its JSON line (labelled)
# appended to RAW and its numbers to VALUES.
bench() {
    local way=$1 test=$2 port=$3 m
    shift 3
    kvbench_json "$way $test" --port "$port" --proto resp --conns "$CONNS" \
        --duration "$DURATION" --keyspace "$KEYSPACE" --value-size "$VALUE" "$@"
    echo "{\"system\":\"$way\",\"test\":\"$test\",\"round\":$ROUND,\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\",${JSON#\{}" >>"$RAW"
    for m in rps p50_us p99_us errors; do
        add "$way|$test|$m" "$(field "$JSON" "$m")"
    done
    log "round $ROUND: $way $test: $(field "$JSON" rps)/s, p50 $(field "$JSON" p50_us) µs, p99 $(field "$JSON" p99_us) µs, errors $(field "$JSON" errors)"
}

TESTS=("set-p1|set|1" "get-p1|get|1" "set-p16|set|16" "get-p16|get|16")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ROUND in $(seq 1 "$ROUNDS"); do
    # Alternate the order of the ways from round to round, so that none always runs first.
    ways=("${WAYS[@]}")
    if ((ROUND % 2 == 0)); then
        ways=()
        for ((i = ${#WAYS[@]} - 1; i >= 0; i--)); do ways+=("${WAYS[i]}"); done
    fi
    for t in "${TESTS[@]}"; do
        IFS='|' read -r test workload pipeline <<<"$t"
        for w in "${ways[@]}"; do
            IFS='|' read -r way port flags <<<"$w"
            # shellcheck disable=SC2086 # the flags are words
            bench "$way" "$test" "$port" $flags --workload "$workload" --pipeline "$pipeline"
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ms() { [[ -z $1 ]] && echo "–" || awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
# cost TLS PLAIN: how much lower TLS's throughput is, in percent.
cost() { awk -v t="$1" -v p="$2" 'BEGIN { if (p > 0) printf "%.0f%%", 100 * (1 - t / p); else print "–" }'; }

echo "### The cost of TLS: $CONNS connections, RESP, 64-byte values, $DURATION s per run, medians of $ROUNDS rounds"
echo
echo "Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| test | ours plain | ours TLS port | ours TLS only | TLS costs ours | Redis plain | Redis TLS | TLS costs Redis |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for t in "${TESTS[@]}"; do
    IFS='|' read -r test _ _ <<<"$t"
    cell() { echo "$(med "$1|$test|rps")/s, p99 $(ms "$(med "$1|$test|p99_us")") ms"; }
    echo "| $test | $(cell ours-plain) | $(cell ours-tls-port) | $(cell ours-tls-only) | $(cost "$(med "ours-tls-port|$test|rps")" "$(med "ours-plain|$test|rps")") | $(cell redis-plain) | $(cell redis-tls) | $(cost "$(med "redis-tls|$test|rps")" "$(med "redis-plain|$test|rps")") |"
done
echo
errors=0
for w in "${WAYS[@]}"; do
    IFS='|' read -r way _ _ <<<"$w"
    for t in "${TESTS[@]}"; do errors=$((errors + $(sum "$way|${t%%|*}|errors"))); done
done
echo "Requests per second (median) and p99 latency; TLS costs: throughput lost on the TLS port"
echo "against the plain port of the same server. Error replies over all runs: $errors."
echo
echo "Raw results: $RAW"
