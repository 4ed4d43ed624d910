#!/usr/bin/env bash
# A million keys expiring at the same instant (issue 15), ours and Redis side by side in one
# run: how long until every key is gone, how long a client waits meanwhile, and memory.
#   1. start a kvnode (release, defaults) and a redis-server (no persistence: `--save ''
#      --appendonly no`, so neither writes to disk during the run) on free ports;
#   2. load KEYS keys of 16 bytes with `SET key value PXAT <deadline>` through `redis-cli
#      --pipe`, the deadline LEAD seconds after the load starts;
#   3. from the deadline on, a probe sends PING one at a time and notes the slowest round
#      trip, and polls DBSIZE every 10 ms until it is 0 (both nodes count a key whose delete
#      has not happened yet), for at most DEADLINE seconds;
#   4. RSS (from /proc) after the load and once DBSIZE is 0.
# Prints a markdown table on stdout; one JSON line per node goes to
# target/bench/expiry-<time>.jsonl. Every process it starts is stopped on every exit path.
#
# Knobs (environment): KEYS (1000000), LEAD (20), DEADLINE (120).
set -euo pipefail

cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
LEAD=${LEAD:-20}
DEADLINE=${DEADLINE:-120}
STARTUP_DEADLINE=60

# run, cleanup, log, start_node, free_ports, need_packages: see bench-lib.sh.
source scripts/bench-lib.sh
bench_setup expiry
need_packages redis-server:redis-server redis-cli:redis-tools python3:python3

log "building release binaries"
run cargo build --release --bins --quiet

# measure NAME PORT PID: load, wait for the deadline, probe; appends a JSON line to RAW.
measure() {
    local name=$1 port=$2 pid=$3 deadline
    deadline=$(($(date +%s%3N) + LEAD * 1000))
    log "$name: loading $KEYS keys expiring at $deadline"
    python3 - "$KEYS" "$deadline" <<'EOF' >"$WORK/load-$name.resp"
import sys
keys, deadline = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for n in range(keys):
    key = "key:%012d" % n
    out.write("*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvvvvvvvvvvvvvvvv\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n"
              % (len(key), key, len(deadline), deadline))
EOF
    # Not through `run`: a background job's stdin would be /dev/null.
    redis-cli -p "$port" --pipe <"$WORK/load-$name.resp" >/dev/null
    [[ $(redis-cli -p "$port" DBSIZE) == "$KEYS" ]] || { log "$name: the load fell short"; return 1; }
    local loaded_rss
    loaded_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    python3 - "$port" "$deadline" "$DEADLINE" "$name" "$loaded_rss" "$pid" <<'EOF' >>"$RAW"
import json, socket, sys, time
port, deadline, limit, name, loaded_rss, pid = sys.argv[1:]
deadline_s, limit = int(deadline) / 1000, float(limit)
s = socket.create_connection(("127.0.0.1", int(port)))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def ask(command):
    s.sendall(command)
    data = b""
    while not data.endswith(b"\r\n"):
        data += s.recv(4096)
    return data
while time.time() < deadline_s:
    time.sleep(0.01)
slowest, pings, gone = 0.0, 0, None
last_poll = 0.0
while time.time() < deadline_s + limit:
    started = time.perf_counter()
    ask(b"*1\r\n$4\r\nPING\r\n")
    slowest = max(slowest, time.perf_counter() - started)
    pings += 1
    if time.time() - last_poll >= 0.01:
        last_poll = time.time()
        if ask(b"*1\r\n$6\r\nDBSIZE\r\n") == b":0\r\n":
            gone = time.time() - deadline_s
            break
rss = int(open("/proc/%s/status" % pid).read().split("VmRSS:")[1].split()[0])
print(json.dumps({"node": name, "keys_gone_s": gone, "slowest_ping_ms": slowest * 1000,
                  "pings": pings, "rss_loaded_kib": int(loaded_rss), "rss_after_kib": rss}))
EOF
}

free_ports 1
REDIS_PORT=$BASE
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" \
    >"$OUT/redis-expiry-$STAMP.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
start_node ours
measure ours "$NODE_PORT" "$NODE_PID"
until redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1; do sleep 0.05; done
measure redis "$REDIS_PORT" "$REDIS_PID"

python3 - "$RAW" "$KEYS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| %s keys expiring at once | every key gone after | slowest PING meanwhile | RSS loaded | RSS after |" % format(int(sys.argv[2]), ","))
print("|---|---:|---:|---:|---:|")
for r in rows:
    gone = "%.2f s" % r["keys_gone_s"] if r["keys_gone_s"] is not None else "not within the limit"
    print("| %s | %s | %.1f ms (%d PINGs) | %.0f MiB | %.0f MiB |" % (
        r["node"], gone, r["slowest_ping_ms"], r["pings"],
        r["rss_loaded_kib"] / 1024, r["rss_after_kib"] / 1024))
EOF
