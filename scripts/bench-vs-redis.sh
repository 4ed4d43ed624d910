#!/usr/bin/env bash
# Compare kvstore with Redis on this machine, in one run (issues 6 and 18), for each deployment
# in DEPLOY: `processes` (a primary and two replicas as three kvnode processes, as a user
# deploys it) and `cluster` (`kvnode --role cluster`, the three nodes in one process):
#   a. ours (--fsync everysec) against a Redis primary with two Redis replicas (appendonly
#      yes, appendfsync everysec): SET, GET and a 90% GET / 10% SET mix, 50 connections,
#      pipeline 1 and 16 (the mix at pipeline 1), keyspace 100000, 64-byte values, driven by
#      kvbench over RESP for both (and over the line protocol for ours), by redis-benchmark
#      (-t set,get) for both, and kvbench's replication lag probe under a SET load; the systems
#      alternate within each round, ROUNDS rounds, medians reported;
#   b. the same clusters with --fsync always / appendfsync always, SET only;
#   c. one primary of each (no replicas) loaded with 1,000,000 keys of 100 bytes: its RSS, and
#      the time it takes to restart and load them from its files (until it answers PING);
#   d. a markdown table on stdout, with the ratio ours/Redis on every row, and a chart of
#      throughput and p99 side by side (gnuplot) at $CHART.
# Every process it starts is stopped on every exit path. Raw results (one JSON object per line)
# and the server logs go to target/bench/.
#
# Knobs (environment): ROUNDS (3), DURATION (3 s per kvbench run), RB_REQUESTS (200000 per
# redis-benchmark test at pipeline 1, ten times that at pipeline 16), BIG_KEYS (1000000),
# DEPLOY ("processes cluster"), CHART (docs/benchmarks-vs-redis.png).
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
RB_REQUESTS=${RB_REQUESTS:-200000}
BIG_KEYS=${BIG_KEYS:-1000000}
CHART=${CHART:-docs/benchmarks-vs-redis.png}
DEPLOY=${DEPLOY:-processes cluster}
CONNS=50
KEYSPACE=100000
VALUE=64
DEADLINE=60 # seconds a server gets to start, sync its replicas or load its files

# run, forget, cleanup, log, need_packages, free_ports, until_true: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup vs-redis
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# stop PID: SIGTERM, then wait for it to exit.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# ---- Set-up: binaries, Redis, gnuplot.
need_packages redis-server:redis-server redis-benchmark:redis-tools gnuplot:gnuplot-nox
log "building release binaries"
run cargo build --release --bins --quiet
KVNODE=target/release/kvnode KVBENCH=target/release/kvbench KVCLI=target/release/kvcli

rcli() { timeout 5 redis-cli -p "$1" "${@:2}" 2>/dev/null || true; }
pong() { [[ $(rcli "$1" PING) == PONG ]]; }
redis_synced() {
    [[ $(rcli "$1" INFO replication) == *connected_slaves:2* ]] &&
        [[ $(rcli "$2" INFO replication) == *master_link_status:up* ]] &&
        [[ $(rcli "$3" INFO replication) == *master_link_status:up* ]]
}
ours_synced() { [[ $(timeout 5 "$KVCLI" --port "$1" INFO 2>/dev/null) == *" connected_replicas=2 "* ]]; }

# start_redis NAME PORT FSYNC [PRIMARY-PORT]: a Redis server with AOF, in a fresh dir (kept
# if it exists, to restart on its files). Sets PID.
start_redis() {
    local name=$1 port=$2 fsync=$3 dir="$WORK/redis-$1"
    local replicaof=()
    [[ -z ${4:-} ]] || replicaof=(--replicaof 127.0.0.1 "$4")
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync "$fsync" --save '' --daemonize no "${replicaof[@]}" \
        >>"$OUT/redis-$name-$STAMP.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}

# start_ours NAME ROLE PORT FSYNC [FLAGS...]: a kvnode (cluster, primary or replica) with its
# data under $WORK/ours-NAME (kept if it exists). Sets PID.
start_ours() {
    local name=$1 role=$2 port=$3 fsync=$4
    "$KVNODE" --role "$role" --listen "127.0.0.1:$port" --data-dir "$WORK/ours-$name" \
        --fsync "$fsync" "${@:5}" 2>>"$OUT/ours-$name-$STAMP.log" &
    PID=$!
    PIDS+=("$PID")
}

# cpu_ticks PID...: user + system clock ticks of these processes (all their threads) so far.
cpu_ticks() {
    local pid total=0 f
    for pid in "$@"; do
        read -ra f <<<"$(sed 's/.*) //' "/proc/$pid/stat")"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# Results: VALUES[key] holds one number per round, space-separated; keys are
# "<system>|<test>|<measure>", systems ours-resp, ours-line and redis (kvbench), rb-ours and
# rb-redis (redis-benchmark).
declare -A VALUES
add() { VALUES[$1]="${VALUES[$1]:-} $2"; }

# field JSON NAME: a number from a flat JSON object (empty if absent).
field() { if [[ $1 =~ \"$2\":([0-9.]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }

# bench SYSTEM TEST PORT SERVER-PIDS KVBENCH-FLAGS...: one kvbench run (50 connections, 64-byte
# values, keyspace 100000, DURATION s), its JSON line (with labels and the servers' CPU time per
# request) appended to RAW, medians fed. SERVER-PIDS is a space-separated list.
bench() {
    local system=$1 test=$2 port=$3 pids=$4 status=0 json before after cpu
    shift 4
    before=$(cpu_ticks $pids)
    run "$KVBENCH" --port "$port" --json --conns "$CONNS" --duration "$DURATION" \
        --keyspace "$KEYSPACE" --value-size "$VALUE" "$@" >"$WORK/bench.json" || status=$?
    after=$(cpu_ticks $pids)
    json=$(cat "$WORK/bench.json")
    if [[ $json != \{* ]]; then
        log "kvbench failed (status $status) on $system $test: $*"
        return 1
    fi
    ((status == 0)) || log "kvbench reported errors on $system $test: $json"
    cpu=$(awk -v t=$((after - before)) -v us="$TICK_US" -v n="$(field "$json" requests)" \
        'BEGIN { printf "%.2f", t * us / (n > 0 ? n : 1) }')
    echo "{\"system\":\"$system\",\"test\":\"$test\",\"round\":$ROUND,\"server_cpu_us_per_req\":$cpu,${json#\{}" >>"$RAW"
    add "$system|$test|rps" "$(field "$json" rps)"
    add "$system|$test|p99" "$(field "$json" p99_us)"
    add "$system|$test|cpu" "$cpu"
    add "$system|$test|errors" "$(field "$json" errors)"
    if [[ -n $(field "$json" lag_p99_us) ]]; then
        add "$system|$test|lag50" "$(field "$json" lag_p50_us)"
        add "$system|$test|lag99" "$(field "$json" lag_p99_us)"
    fi
    log "round $ROUND: $system $test: $(field "$json" rps) req/s, p99 $(field "$json" p99_us) µs, server CPU $cpu µs/req, errors $(field "$json" errors)"
}

# rbench SYSTEM PORT PIPELINE: redis-benchmark -t set,get with the same shape of load.
rbench() {
    local system=$1 port=$2 pipeline=$3 n=$RB_REQUESTS line test rps p99
    ((pipeline == 1)) || n=$((RB_REQUESTS * 10))
    run redis-benchmark -p "$port" -t set,get -c "$CONNS" -n "$n" -r "$KEYSPACE" -d "$VALUE" \
        -P "$pipeline" --csv >"$WORK/rb.csv" 2>/dev/null || log "redis-benchmark failed on $system"
    while IFS=, read -r test rps _ _ _ _ p99 _; do
        test=${test//\"/} rps=${rps//\"/} p99=${p99//\"/}
        [[ $test == SET || $test == GET ]] || continue
        test="$DEP:${test,,}-p$pipeline"
        p99=$(awk -v ms="$p99" 'BEGIN { printf "%.0f", ms * 1000 }')
        echo "{\"system\":\"$system\",\"test\":\"$test\",\"round\":$ROUND,\"tool\":\"redis-benchmark\",\"rps\":$rps,\"p99_us\":$p99}" >>"$RAW"
        add "$system|$test|rps" "${rps%.*}"
        add "$system|$test|p99" "$p99"
        log "round $ROUND: $system $test: $rps req/s, p99 $p99 µs"
    done <"$WORK/rb.csv"
}

median() {
    printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print ""; exit }
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { median "${VALUES[$1]:-}"; }
# last KEY: the latest value fed for KEY (this round's).
last() { local v=(${VALUES[$1]:-0}); echo "${v[-1]}"; }

# start_clusters FSYNC TAG: ours ($DEP: one cluster process, or a primary and two replica
# processes) and Redis (primary + 2 replicas), fresh data, synced. Sets OURS_PORT OURS_PIDS
# REDIS_PORT REDIS_PIDS.
start_clusters() {
    local fsync=$1 tag=$DEP-$2
    free_ports 3
    OURS_PORT=$BASE
    if [[ $DEP == cluster ]]; then
        start_ours "$tag" cluster "$OURS_PORT" "$fsync"
        OURS_PIDS=$PID
    else
        start_ours "$tag-replica1" replica $((OURS_PORT + 1)) "$fsync"
        OURS_PIDS=$PID
        start_ours "$tag-replica2" replica $((OURS_PORT + 2)) "$fsync"
        OURS_PIDS+=" $PID"
        start_ours "$tag-primary" primary "$OURS_PORT" "$fsync" \
            --replica "127.0.0.1:$((OURS_PORT + 1))" --replica "127.0.0.1:$((OURS_PORT + 2))"
        OURS_PIDS="$PID $OURS_PIDS"
    fi
    free_ports 3
    REDIS_PORT=$BASE
    start_redis "$tag-primary" "$REDIS_PORT" "$fsync"
    REDIS_PIDS=$PID
    start_redis "$tag-replica1" $((REDIS_PORT + 1)) "$fsync" "$REDIS_PORT"
    REDIS_PIDS+=" $PID"
    start_redis "$tag-replica2" $((REDIS_PORT + 2)) "$fsync" "$REDIS_PORT"
    REDIS_PIDS+=" $PID"
    WATCH=$OURS_PIDS until_true "our cluster ($tag) to connect its replicas" \
        ours_synced "$OURS_PORT"
    WATCH=$REDIS_PIDS until_true "the Redis replicas ($tag) to sync" \
        redis_synced "$REDIS_PORT" $((REDIS_PORT + 1)) $((REDIS_PORT + 2))
    log "$tag: ours on $OURS_PORT (pids $OURS_PIDS), Redis on $REDIS_PORT (pids $REDIS_PIDS)"
}

stop_clusters() {
    local pid
    for pid in $OURS_PIDS $REDIS_PIDS; do stop "$pid"; done
}

# deployment DEP: sections a and b for one of the DEPLOY deployments.
deployment() {
DEP=$1
# ---- a. everysec: the main matrix.
start_clusters everysec everysec
ROUND=0
log "prefilling $KEYSPACE keys on both"
run "$KVBENCH" --port "$OURS_PORT" --proto resp --prefill --keyspace "$KEYSPACE" \
    --value-size "$VALUE" --conns 10 --requests 1 >/dev/null
run "$KVBENCH" --port "$REDIS_PORT" --proto resp --prefill --keyspace "$KEYSPACE" \
    --value-size "$VALUE" --conns 10 --requests 1 >/dev/null
for ROUND in $(seq 1 "$ROUNDS"); do
    # Alternate who goes first, so that a drift on the machine does not favour one side.
    if ((ROUND % 2)); then order="redis ours"; else order="ours redis"; fi
    for workload in set get mix; do
        for pipeline in 1 16; do
            [[ $workload != mix || $pipeline == 1 ]] || continue
            test="$DEP:$workload-p$pipeline"
            flags=(--workload "$workload")
            [[ $workload != mix ]] || flags=(--workload mixed --set-ratio 0.1)
            for system in $order; do
                if [[ $system == redis ]]; then
                    bench redis "$test" "$REDIS_PORT" "$REDIS_PIDS" --proto resp \
                        "${flags[@]}" --pipeline "$pipeline"
                else
                    bench ours-resp "$test" "$OURS_PORT" "$OURS_PIDS" --proto resp \
                        "${flags[@]}" --pipeline "$pipeline"
                    bench ours-line "$test" "$OURS_PORT" "$OURS_PIDS" --proto line \
                        "${flags[@]}" --pipeline "$pipeline"
                fi
            done
        done
    done
    # Replication lag to the first replica under the SET load (pipeline 1): at the most each
    # system takes, and at half of the lesser of the two maxima of this round (the same load
    # for both).
    half=$(awk -v a="$(last "ours-resp|$DEP:set-p1|rps")" -v b="$(last "redis|$DEP:set-p1|rps")" \
        'BEGIN { m = (a < b) ? a : b; printf "%.0f", m / 2 }')
    for load in max half; do
        rate=()
        [[ $load == max ]] || rate=(--rate "$half")
        for system in $order; do
            if [[ $system == redis ]]; then
                bench redis "$DEP:lag-$load" "$REDIS_PORT" "$REDIS_PIDS" --proto resp \
                    --workload set "${rate[@]}" --lag-probe "127.0.0.1:$((REDIS_PORT + 1))"
            else
                bench ours-resp "$DEP:lag-$load" "$OURS_PORT" "$OURS_PIDS" --proto resp \
                    --workload set "${rate[@]}" --lag-probe "127.0.0.1:$((OURS_PORT + 1))"
            fi
        done
    done
    for system in $order; do
        for pipeline in 1 16; do
            if [[ $system == redis ]]; then
                rbench rb-redis "$REDIS_PORT" "$pipeline"
            else
                rbench rb-ours "$OURS_PORT" "$pipeline"
            fi
        done
    done
done
stop_clusters

# ---- b. fsync always, SET only.
start_clusters always always
for ROUND in $(seq 1 "$ROUNDS"); do
    if ((ROUND % 2)); then order="redis ours"; else order="ours redis"; fi
    for pipeline in 1 16; do
        for system in $order; do
            if [[ $system == redis ]]; then
                bench redis "$DEP:always-set-p$pipeline" "$REDIS_PORT" "$REDIS_PIDS" --proto resp \
                    --workload set --pipeline "$pipeline"
            else
                bench ours-resp "$DEP:always-set-p$pipeline" "$OURS_PORT" "$OURS_PIDS" --proto resp \
                    --workload set --pipeline "$pipeline"
                bench ours-line "$DEP:always-set-p$pipeline" "$OURS_PORT" "$OURS_PIDS" --proto line \
                    --workload set --pipeline "$pipeline"
            fi
        done
    done
done
stop_clusters
}
for DEP in $DEPLOY; do deployment "$DEP"; done

# ---- c. Memory with BIG_KEYS keys of 100 bytes, and restart time, one primary each.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# restart SYSTEM PORT: stop the server (PID), start it again on its files, time until PONG.
ROUND=0
for system in ours redis; do
    free_ports 1
    port=$BASE
    if [[ $system == ours ]]; then start_ours big primary "$port" everysec; else
        start_redis big "$port" everysec; fi
    WATCH=$PID until_true "$system to start" pong "$port"
    log "$system: loading $BIG_KEYS keys of 100 bytes"
    run "$KVBENCH" --port "$port" --proto resp --prefill --keyspace "$BIG_KEYS" --value-size 100 \
        --conns 10 --requests 1 >/dev/null
    sleep 2 # let a compaction or AOF rewrite the load started settle
    keys=$(rcli "$port" DBSIZE)
    rss=$(rss_kib "$PID")
    add "$system|big|rss" "$rss"
    for r in $(seq 1 "$ROUNDS"); do
        stop "$PID"
        du=$(du -sk "$WORK/$([[ $system == ours ]] && echo ours-big || echo redis-big)" | cut -f1)
        started=$(date +%s%N)
        if [[ $system == ours ]]; then start_ours big primary "$port" everysec; else
            start_redis big "$port" everysec; fi
        WATCH=$PID POLL=0.01 until_true "$system to load its files" pong "$port"
        ms=$((($(date +%s%N) - started) / 1000000))
        reloaded=$(rcli "$port" DBSIZE)
        rss_after=$(rss_kib "$PID")
        add "$system|big|restart" "$ms"
        echo "{\"system\":\"$system\",\"test\":\"big\",\"round\":$r,\"keys\":$keys,\"rss_kib\":$rss,\"files_kib\":$du,\"restart_ms\":$ms,\"keys_after_restart\":${reloaded:-0},\"rss_after_restart_kib\":$rss_after}" >>"$RAW"
        log "$system: $keys keys, RSS $rss KiB, files $du KiB, restart $ms ms ($reloaded keys, RSS $rss_after KiB)"
        [[ $reloaded == "$keys" ]] || log "WARNING: $system had $keys keys before the restart, $reloaded after"
    done
    stop "$PID"
done

# ---- d. The tables and the chart.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%\047d", v }'; }
msf() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%.2f", v / 1000 }'; }
name() {
    local t=${1#*:}
    t=${t/always-/fsync always, }
    t=${t/set-/SET, pipeline }
    t=${t/get-/GET, pipeline }
    t=${t/mix-/90% GET \/ 10% SET, pipeline }
    echo "${t/pipeline p/pipeline }"
}

CHART_DATA="$WORK/chart.dat"
: >"$CHART_DATA"
# table_row TEST OURS-SYSTEM REDIS-SYSTEM CLIENT-LABEL CHART-LABEL
table_row() {
    local test=$1 o=$2 r=$3 rps_o rps_r p99_o p99_r cpu
    rps_o=$(med "$o|$test|rps") rps_r=$(med "$r|$test|rps")
    p99_o=$(med "$o|$test|p99") p99_r=$(med "$r|$test|p99")
    cpu="$(med "$o|$test|cpu") / $(med "$r|$test|cpu")"
    [[ $cpu != " / " ]] || cpu="–"
    echo "| $(name "$test") | $4 | $(fmt "$rps_o") | $(fmt "$rps_r") | $(ratio "$rps_o" "$rps_r") | $(msf "$p99_o") | $(msf "$p99_r") | $(ratio "$p99_o" "$p99_r") | $cpu |"
    [[ -z $rps_o || -z $rps_r || -z $p99_o || -z $p99_r ]] ||
        echo "\"$5\" $(ratio "$rps_o" "$rps_r") $(ratio "$p99_r" "$p99_o")" >>"$CHART_DATA"
}
for DEP in $DEPLOY; do
    case $DEP in
    processes) what="a primary and two replicas as three kvnode processes" short=3p ;;
    *) what="kvnode --role cluster (the three nodes in one process)" short=1p ;;
    esac
    echo "### Versus Redis, ours as $what: medians of $ROUNDS rounds ($DURATION s per kvbench run, $CONNS connections, keyspace $KEYSPACE, $VALUE-byte values)"
    echo
    echo "| test | client, our protocol | ours req/s | Redis req/s | ratio | ours p99 ms | Redis p99 ms | ratio | server CPU µs/req, ours / Redis |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for test in set-p1 get-p1 mix-p1 set-p16 get-p16; do
        label="$short ${test^^}"
        table_row "$DEP:$test" ours-resp redis "kvbench, RESP" "$label"
        table_row "$DEP:$test" ours-line redis "kvbench, line" "$label line"
        [[ $test == mix-p1 ]] || table_row "$DEP:$test" rb-ours rb-redis "redis-benchmark" "$label r-b"
    done
    for test in always-set-p1 always-set-p16; do
        label="$short ALWAYS SET P${test##*-p}"
        table_row "$DEP:$test" ours-resp redis "kvbench, RESP" "$label"
        table_row "$DEP:$test" ours-line redis "kvbench, line" "$label line"
    done
    echo
    echo "Replication lag to the first replica (kvbench --lag-probe: PUT a fresh key on the primary, GET it from the replica until it is there), ms:"
    echo
    echo "| SET load, pipeline 1 | ours req/s | Redis req/s | ours p50 | Redis p50 | ours p99 | Redis p99 | p99 ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for load in max half; do
        t="$DEP:lag-$load"
        [[ $load == max ]] && what="the most each takes" || what="half the lesser maximum (--rate)"
        echo "| $what | $(fmt "$(med "ours-resp|$t|rps")") | $(fmt "$(med "redis|$t|rps")") | $(msf "$(med "ours-resp|$t|lag50")") | $(msf "$(med "redis|$t|lag50")") | $(msf "$(med "ours-resp|$t|lag99")") | $(msf "$(med "redis|$t|lag99")") | $(ratio "$(med "ours-resp|$t|lag99")" "$(med "redis|$t|lag99")") |"
    done
    echo
done
rss_o=$(med "ours|big|rss") rss_r=$(med "redis|big|rss")
rs_o=$(med "ours|big|restart") rs_r=$(med "redis|big|restart")
echo "| one primary, no replicas | ours | Redis | ratio |"
echo "|---|---:|---:|---:|"
echo "| RSS with $(fmt "$BIG_KEYS") keys of 100 B, MiB | $(awk -v k="$rss_o" 'BEGIN { printf "%.0f", k / 1024 }') | $(awk -v k="$rss_r" 'BEGIN { printf "%.0f", k / 1024 }') | $(ratio "$rss_o" "$rss_r") |"
echo "| restart with $(fmt "$BIG_KEYS") keys, until PING answers, ms | $rs_o | $rs_r | $(ratio "$rs_o" "$rs_r") |"
echo
echo "Ratio = ours / Redis: above 1.0 is better for req/s, below 1.0 for p99, RSS and restart time."
echo "Server CPU = user + system time of all the server processes of the deployment per request."
echo
for key in "${!VALUES[@]}"; do
    [[ $key == *"|errors" ]] || continue
    e=$(median "${VALUES[$key]}")
    [[ -z $e || $e == 0 ]] || echo "**Errors:** ${key%|errors}: ${VALUES[$key]}"
done

gnuplot <<EOF
set terminal pngcairo size 1600,680 font "sans,10"
set output "$CHART"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set bmargin 9
set rmargin 12
set xtics rotate by -45 nomirror
set yrange [0:*]
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "black" lw 2 front
set title "ours / Redis (medians of $ROUNDS rounds, $CONNS connections, $VALUE-byte values): above the line at 1.0, ours is ahead\n3p: ours as three processes, 1p: --role cluster; P1, P16: pipeline depth; MIX: 90% GET, 10% SET; ALWAYS: --fsync always / appendfsync always (else everysec)\nload from kvbench over RESP, except 'line' (kvbench, our line protocol) and 'r-b' (redis-benchmark, RESP)"
plot "$CHART_DATA" using 2:xtic(1) title "throughput: ours req/s / Redis req/s" lc rgb "#1f77b4", \
     "" using 3 title "p99 latency: Redis p99 / ours p99" lc rgb "#ff7f0e"
EOF
echo "Chart: $CHART. Raw results: $RAW; server logs: $OUT/{ours,redis}-*-$STAMP.log"
