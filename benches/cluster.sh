#!/usr/bin/env bash
# Cluster mode, measured: two rollcall nodes sharing a private redis-server, next to a single
# server (no Redis) and to one node of the cluster alone, under the same loads:
#   (a) presence-latency: --members watch at node B, the timed users join at node A;
#   (b) fanout: the subscribers split over A and B, every POST /publish at A;
#   (c) Redis cost: commands per presence change (a churn of CYCLES users at A, two changes
#       each: join and leave) and per publication (PUBLICATIONS x POST /publish at A), from
#       both nodes' rollcall_cluster_redis_commands_total and Redis's INFO commandstats and
#       INFO cpu, read before and after once everything has settled.
#
# Usage:
#     benches/cluster.sh
#
# Settings (environment):
#     MEMBERS=1000 SAMPLES=50        presence-latency
#     SUBSCRIBERS=10000 MESSAGES=40  fanout (keep it moderate on a small machine)
#     REPEAT=3                       fanout runs per column: the report gives the median run,
#                                    the range and how many runs had their POSTs pile up
#     SOURCES=4                      source addresses of the load tool (fanout)
#     CYCLES=2000 CONCURRENCY=50     churn (the Redis cost per presence change)
#     PUBLICATIONS=1000              POST /publish (the Redis cost per publication)
#     NODE_TTL=15s                   --node-ttl of the nodes
#     TIMEOUT=60s                    limit of each phase of the load tool
#     LIMIT=900                      seconds the whole script may take after the build
#     OUT=target/bench-report        where the report goes
#     SKIP_BUILD=1                   use the release binaries already built
#
# Needs cargo, redis-server (Debian's package; started here on a free port, without
# persistence, and stopped at the end: no system service is used) and python3.
#
# Writes OUT/cluster.md (also printed on stdout), OUT/cluster/*.json (the load tool's JSON and
# the counter snapshots) and OUT/cluster/logs/. Exit status 0 when every run passed, 1 when one
# failed (the report still shows the others), 2 for invalid settings.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MEMBERS=${MEMBERS:-1000}
SAMPLES=${SAMPLES:-50}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
MESSAGES=${MESSAGES:-40}
REPEAT=${REPEAT:-3}
SOURCES=${SOURCES:-4}
CYCLES=${CYCLES:-2000}
CONCURRENCY=${CONCURRENCY:-50}
PUBLICATIONS=${PUBLICATIONS:-1000}
NODE_TTL=${NODE_TTL:-15s}
TIMEOUT=${TIMEOUT:-60s}
LIMIT=${LIMIT:-900}
OUT=${OUT:-target/bench-report}
RAW=$OUT/cluster
LOGS=$RAW/logs
ROLLCALL=target/release/rollcall
LOAD=target/release/rollcall-load

die() {
    echo "cluster.sh: $*" >&2
    exit 2
}
note() { echo "== $*" >&2; }

for name in MEMBERS SAMPLES SUBSCRIBERS MESSAGES REPEAT SOURCES CYCLES CONCURRENCY PUBLICATIONS LIMIT; do
    [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive whole number, not '${!name}'"
done
[[ $TIMEOUT =~ ^[1-9][0-9]*s$ ]] || die "TIMEOUT must be whole seconds such as 60s, not '$TIMEOUT'"
[[ $NODE_TTL =~ ^[1-9][0-9]*(ms|s|m)$ ]] || die "NODE_TTL must look like 15s, not '$NODE_TTL'"
for tool in redis-server python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install redis-server python3)"
done

# Each node and the load tool hold up to SUBSCRIBERS sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < SUBSCRIBERS + 128)); then
    die "open-file limit $(ulimit -n) is too small for SUBSCRIBERS=$SUBSCRIBERS"
fi

# --------------------------------------------------------------------------- processes

# Every process this script started, by pid (stopped by the EXIT trap).
PIDS=()
CHILD_PID=""

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true # timeout passes it on
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    local pid
    for pid in "${PIDS[@]}"; do
        stop "$pid"
    done
}

# Stops process $1 if it still runs: SIGTERM, SIGKILL after 10 s.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Seconds left of LIMIT (counted from the end of the build).
remaining() { echo $((DEADLINE - SECONDS)); }

# Runs a command under `timeout`, at most $1 seconds and never past LIMIT, in the background
# so that a signal to this script runs the trap at once (bash defers traps while a foreground
# command runs).
bounded() {
    local seconds=$1 rc=0 left
    shift
    left=$(remaining)
    ((left > 0)) || {
        echo "cluster.sh: LIMIT=$LIMIT s reached" >&2
        return 124
    }
    ((seconds < left)) || seconds=$left
    timeout --kill-after=10 "$seconds" "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# A port free a moment ago (bound on 127.0.0.1:0 and released).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts redis-server on a free port; sets REDIS_PORT once it answers PING as our process
# (a few ports are tried, in case one is taken meanwhile).
start_redis() {
    local log=$LOGS/redis.log pid
    for _ in 1 2 3 4 5; do
        REDIS_PORT=$(free_port)
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$ROOT/$LOGS" >"$log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            if [[ $(redis_info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p') == "$pid" ]]; then
                return 0
            fi
            sleep 0.1
        done
        echo "redis-server did not come up on port $REDIS_PORT; its log ends:" >&2
        tail -n 5 "$log" >&2
        stop "$pid"
    done
    return 1
}

# `INFO SECTION` of our Redis (raw RESP over a socket: no redis-cli needed).
redis_info() {
    python3 - "$REDIS_PORT" "$1" <<'EOF' 2>/dev/null
import socket, sys
port, section = int(sys.argv[1]), sys.argv[2]
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
    def more():
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("Redis closed the connection")
        return chunk
    data = b""
    while b"\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n")
    size = int(head[1:])
    while len(body) < size:
        body += more()
    sys.stdout.write(body[:size].decode())
EOF
}

# Starts `rollcall --listen 127.0.0.1:0` with the flags after $1 (its name); sets NODE_PORT and
# NODE_PID once it printed `listening on`, and, with --redis, once it logged `cluster live`.
start_node() {
    local name=$1 log=$LOGS/$1.log line
    shift
    RUST_LOG=info "$ROLLCALL" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    NODE_PORT=""
    for _ in $(seq 300); do
        if ! kill -0 "$NODE_PID" 2>/dev/null; then
            echo "$name exited at start; its log:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        line=$(grep -oE -m1 'listening on 127\.0\.0\.1:[0-9]+' "$log" || true)
        [[ -n $line ]] && NODE_PORT=${line##*:}
        if [[ -n $NODE_PORT ]] && { [[ $* != *--redis* ]] || grep -q 'cluster live' "$log"; }; then
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not come up (listening, cluster live) within 30 s; its log:" >&2
    tail -n 20 "$log" >&2
    return 1
}

# Waits (at most 60 s) until the servers on ports $@ hold no connection and show no member:
# the previous run's departures went through (on a cluster node, through Redis too).
# (The Python goes in with -c: `bounded` runs it in the background, whose stdin is /dev/null.)
QUIET_PY=$(
    cat <<'EOF'
import json, sys, time, urllib.request
start = time.monotonic()
deadline = start + 60
for port in sys.argv[1:]:
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/presence", timeout=5) as r:
            p = json.load(r)
        if p["connections"] == 0 and not p["channels"]:
            break
        if time.monotonic() > deadline:
            sys.exit(f"port {port} did not settle: {p['connections']} connections, "
                     f"channels {sorted(p['channels'])}")
        time.sleep(0.05)
print(f"   settled in {(time.monotonic() - start) * 1000:.0f} ms", file=sys.stderr)
EOF
)
quiet() {
    bounded 70 python3 -c "$QUIET_PY" "$@"
}

# Counters of the cluster as JSON on stdout: Redis's commandstats and CPU time, and each
# node's rollcall_cluster_redis_commands_total (node ports in $@).
snapshot() {
    local stats cpu
    stats=$(redis_info commandstats) && cpu=$(redis_info cpu) || return 1
    STATS=$stats CPU=$cpu python3 - "$@" <<'EOF'
import json, os, re, sys, time, urllib.request
calls, usec = {}, {}
for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", os.environ["STATS"], re.M):
    calls[m.group(1)], usec[m.group(1)] = int(m.group(2)), int(m.group(3))
cpu = dict(re.findall(r"^(used_cpu_(?:sys|user)):([\d.]+)", os.environ["CPU"], re.M))
nodes = {}
for port in sys.argv[1:]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    nodes[port] = float(re.search(r"^rollcall_cluster_redis_commands_total (\S+)$", text, re.M)[1])
print(json.dumps({"time": time.monotonic(), "calls": calls, "usec": usec,
                  "cpu_seconds": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
                  "node_commands": nodes}))
EOF
}

# PUBLICATIONS x POST /publish to port $1, channel with no member (the Redis cost of a
# publication does not depend on the subscribers: one PUBLISH, one note per node).
PUBLISH_PY=$(
    cat <<'EOF'
import json, sys, urllib.request
port, count = sys.argv[1], int(sys.argv[2])
for k in range(count):
    body = json.dumps({"channel": "bench-cost", "data": {"k": k}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/publish", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200, r.status
print(f"{count} publications answered 200", file=sys.stderr)
EOF
)
publish_many() {
    bounded 120 python3 -c "$PUBLISH_PY" "$1" "$PUBLICATIONS"
}

FAILED=0
COMMANDS=()

# Runs the load tool (`rollcall-load ARGS... --json`), output in RAW/$1.json; a failure is
# noted and the script goes on.
load() {
    local name=$1 rc=0
    shift
    COMMANDS+=("$name: rollcall-load $*")
    note "$name: rollcall-load $*"
    bounded $((${TIMEOUT%s} * 4 + 30)) "$LOAD" "$@" --timeout "$TIMEOUT" --json \
        >"$RAW/$name.json" 2>"$LOGS/$name.load.log" || rc=$?
    sed 's/^/   /' "$LOGS/$name.load.log" >&2
    if ((rc != 0)); then
        echo "cluster.sh: $name failed (status $rc)" >&2
        FAILED=1
    fi
}

# --------------------------------------------------------------------------- build

mkdir -p "$RAW" "$LOGS"
rm -f "$RAW"/*.json "$LOGS"/*.log

if [[ -z ${SKIP_BUILD:-} ]]; then
    note "building rollcall and rollcall-load (release)"
    cargo build --release --locked --bin rollcall --bin rollcall-load
fi
[[ -x $ROLLCALL && -x $LOAD ]] || die "$ROLLCALL or $LOAD is missing (run without SKIP_BUILD)"
"$LOAD" --help | grep -q -- '--observe-url' || die "$LOAD has no --observe-url: rebuild it"
DEADLINE=$((SECONDS + LIMIT))

latency_args=(--members "$MEMBERS" --samples "$SAMPLES")
fanout_args=(--subscribers "$SUBSCRIBERS" --messages "$MESSAGES" --sources "$SOURCES")
churn_args=(--cycles "$CYCLES" --concurrency "$CONCURRENCY")

# --------------------------------------------------------------------------- single server

note "single server (no Redis)"
start_node single || die "the single server did not start"
S=$NODE_PORT
S_PID=$NODE_PID
load single-latency presence-latency --url "ws://127.0.0.1:$S/" "${latency_args[@]}"
quiet "$S" || FAILED=1
for r in $(seq "$REPEAT"); do
    load "single-fanout-$r" fanout --url "ws://127.0.0.1:$S/" "${fanout_args[@]}"
    quiet "$S" || FAILED=1
done
load single-churn churn --url "ws://127.0.0.1:$S/" "${churn_args[@]}"
# Alone on the machine while the cluster is measured.
stop "$S_PID"

# --------------------------------------------------------------------------- cluster

note "redis-server and two nodes"
start_redis || die "redis-server did not start"
cluster=(--redis "redis://127.0.0.1:$REDIS_PORT" --node-ttl "$NODE_TTL")
start_node node-a "${cluster[@]}" --node-id bench-a || die "node A did not start"
A=$NODE_PORT
start_node node-b "${cluster[@]}" --node-id bench-b || die "node B did not start"
B=$NODE_PORT
note "redis on $REDIS_PORT, node A on $A, node B on $B"
url_a="ws://127.0.0.1:$A/"
url_b="ws://127.0.0.1:$B/"

load node-latency presence-latency --url "$url_a" "${latency_args[@]}"
quiet "$A" "$B" || FAILED=1
load cross-latency presence-latency --url "$url_a" --observe-url "$url_b" "${latency_args[@]}"
quiet "$A" "$B" || FAILED=1
for r in $(seq "$REPEAT"); do
    load "node-fanout-$r" fanout --url "$url_a" "${fanout_args[@]}"
    quiet "$A" "$B" || FAILED=1
    load "cross-fanout-$r" fanout --url "$url_a" --subscribe-url "$url_a" \
        --subscribe-url "$url_b" "${fanout_args[@]}"
    quiet "$A" "$B" || FAILED=1
done

note "Redis cost: churn of $CYCLES users at A, then $PUBLICATIONS publications at A"
# Redis's own CPU while nothing happens (its timers, the nodes' liveness refreshes), to take
# out of the steps below.
snapshot "$A" "$B" >"$RAW/cost-idle.json" || FAILED=1
sleep 2
snapshot "$A" "$B" >"$RAW/cost-0.json" || FAILED=1
load node-churn churn --url "$url_a" "${churn_args[@]}"
quiet "$A" "$B" || FAILED=1
snapshot "$A" "$B" >"$RAW/cost-1.json" || FAILED=1
COMMANDS+=("publications: $PUBLICATIONS x POST http://127.0.0.1:$A/publish (a channel without members)")
publish_many "$A" || FAILED=1
# Each PUBLISH left node A before its POST was answered; give Redis a moment to run the last.
sleep 0.2
snapshot "$A" "$B" >"$RAW/cost-2.json" || FAILED=1

# --------------------------------------------------------------------------- report

note "report"
printf '%s\n' "${COMMANDS[@]}" >"$RAW/commands.txt"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
PORTS="S=$S A=$A B=$B" RAW=$RAW CYCLES=$CYCLES PUBLICATIONS=$PUBLICATIONS MEMBERS=$MEMBERS SAMPLES=$SAMPLES \
    SUBSCRIBERS=$SUBSCRIBERS MESSAGES=$MESSAGES REPEAT=$REPEAT COMMIT=$commit NODE_TTL=$NODE_TTL \
    REDIS_VERSION=$(redis-server --version | grep -oE 'v=[0-9.]+' | cut -c3-) \
    python3 - >"$OUT/cluster.md" <<'EOF'
import datetime, json, os, re

env = os.environ
raw = env["RAW"]

def load(name):
    try:
        return json.load(open(f"{raw}/{name}.json"))
    except (OSError, ValueError):
        return None

def ms(summary, key):
    return f"{summary[key]:.1f}" if summary else "–"

def pair(run, field):
    if not run or not run.get("ok"):
        return "failed" if run else "–"
    s = run[field]
    return f"{ms(s, 'p50_ms')} / {ms(s, 'p99_ms')} ms"

def rate(run, field):
    if not run or not run.get("ok"):
        return "failed" if run else "–"
    return f"{run[field]:,.0f}"

def node_pair(run, index):
    if not run or not run.get("ok"):
        return "–"
    s = run["nodes"][index]["latency"]
    return f"{ms(s, 'p50_ms')} / {ms(s, 'p99_ms')} ms"

runs = {name: load(name) for name in [
    "single-latency", "node-latency", "cross-latency", "single-churn", "node-churn"]}

# Fanout runs land in one of two regimes: one message per write and read, or, when the POSTs
# are answered faster than the deliveries go out, piled up and coalesced (several messages per
# write and read: many more deliveries/s, later ones). The median run stands for the column.
def piled_up(run):
    return run["publish_seconds"] < 0.25 * run["seconds"]

fanouts = {}
for where in ["single", "node", "cross"]:
    tries = [load(f"{where}-fanout-{r}") for r in range(1, int(env["REPEAT"]) + 1)]
    good = sorted((t for t in tries if t and t.get("ok")), key=lambda t: t["delivered_per_second"])
    fanouts[where] = {"tries": tries, "good": good, "median": good[len(good) // 2] if good else None}
    runs[f"{where}-fanout"] = fanouts[where]["median"] if len(good) == len(tries) else None

def fanout_range(where):
    f = fanouts[where]
    if len(f["good"]) != len(f["tries"]):
        return f"failed {len(f['tries']) - len(f['good'])} of {len(f['tries'])}"
    rates = [t["delivered_per_second"] for t in f["good"]]
    return f"{min(rates):,.0f} – {max(rates):,.0f}"
cpu_model = re.search(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.M)
out = []
out.append("## rollcall cluster: two nodes and one Redis, next to a single server\n")
out.append(
    f"{os.cpu_count()} cores ({cpu_model and cpu_model.group(1).strip()}), Redis "
    f"{env['REDIS_VERSION']}, rollcall {env['COMMIT']}, "
    f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; nodes with "
    f"`--node-ttl {env['NODE_TTL']}`; every process on this machine, release build.\n")
out.append("| load | single server | one cluster node | across two nodes |")
out.append("|---|--:|--:|--:|")
lat = f"presence-latency, {int(env['MEMBERS']):,} members, {env['SAMPLES']} samples x 16 observers"
out.append(f"| {lat}: join p50 / p99 | " + " | ".join(
    pair(runs[f"{w}-latency"], "join_latency") for w in ["single", "node", "cross"]) + " |")
out.append("| ... leave p50 / p99 | " + " | ".join(
    pair(runs[f"{w}-latency"], "leave_latency") for w in ["single", "node", "cross"]) + " |")
fan = f"fanout, {int(env['SUBSCRIBERS']):,} subscribers x {env['MESSAGES']} messages"
out.append(f"| {fan}: deliveries/s, median of {env['REPEAT']} runs | " + " | ".join(
    rate(runs[f"{w}-fanout"], "delivered_per_second") for w in ["single", "node", "cross"]) + " |")
out.append("| ... range | " + " | ".join(
    fanout_range(w) for w in ["single", "node", "cross"]) + " |")
out.append("| ... runs whose POSTs piled up (answered in < 1/4 of the run) | " + " | ".join(
    f"{sum(piled_up(t) for t in fanouts[w]['good'])} of {len(fanouts[w]['tries'])}"
    for w in ["single", "node", "cross"]) + " |")
out.append("| ... latency p50 / p99 (median run) | " + " | ".join(
    pair(runs[f"{w}-fanout"], "latency") for w in ["single", "node", "cross"]) + " |")
cross = runs["cross-fanout"]
out.append(f"| ... latency at A (publishing node) / at B, p50 / p99 | | | "
           f"A {node_pair(cross, 0)}; B {node_pair(cross, 1)} |")
churn = f"churn, {int(env['CYCLES']):,} cycles"
out.append(f"| {churn}: cycles/s | {rate(runs['single-churn'], 'cycles_per_second')} | "
           f"{rate(runs['node-churn'], 'cycles_per_second')} | |")
out.append("")
out.append("Columns: *single server* has no `--redis`; *one cluster node*: every connection and "
           "every POST at node A of the cluster; *across two nodes*: presence-latency members "
           "(the observers) at B and the timed users at A, fanout subscribers split evenly over "
           "A and B with every POST at A. A fanout run whose POSTs piled up sent several "
           "messages per write: many more deliveries/s, each later; compare the median runs "
           "with that in mind.\n")

idle = (load("cost-idle"), load("cost-0"))
idle_rate = 0.0
if all(idle):
    idle_rate = (idle[1]["cpu_seconds"] - idle[0]["cpu_seconds"]) / (idle[1]["time"] - idle[0]["time"])

def cost(before, after, count):
    b, a = load(before), load(after)
    if not b or not a:
        return None
    delta = lambda d, k: a[d].get(k, 0) - b[d].get(k, 0)
    busy = a["cpu_seconds"] - b["cpu_seconds"] - idle_rate * (a["time"] - b["time"])
    every = sum(delta("calls", k) for k in a["calls"] if k not in ("info", "ping"))
    return {
        "node": sum(a["node_commands"].values()) - sum(b["node_commands"].values()),
        "evalsha": delta("calls", "evalsha"),
        "publish": delta("calls", "publish"),
        "every": every,
        "script_us": delta("usec", "evalsha"),
        "cpu_us": max(busy, 0.0) * 1e6,
        "count": count,
    }

changes = 2 * int(env["CYCLES"])
rows = [
    (f"presence change (churn of {int(env['CYCLES']):,} users at A: {changes:,} joins and "
     f"leaves)", cost("cost-0", "cost-1", changes)),
    (f"publication ({env['PUBLICATIONS']} POST /publish at A)",
     cost("cost-1", "cost-2", int(env["PUBLICATIONS"]))),
]
out.append("Redis cost, counted before and after each step once the nodes had settled:\n")
out.append("| per | commands sent by the nodes | EVALSHA | PUBLISH (in the script or not) "
           "| Redis commands run, those inside the script included | EVALSHA time "
           "| Redis CPU |")
out.append("|---|--:|--:|--:|--:|--:|--:|")
for label, c in rows:
    if not c:
        out.append(f"| {label} | – | – | – | – | – | – |")
        continue
    n = c["count"]
    out.append(f"| {label} | {c['node'] / n:.2f} | {c['evalsha'] / n:.2f} | "
               f"{c['publish'] / n:.2f} | {c['every'] / n:.1f} | {c['script_us'] / n:.1f} µs "
               f"| {c['cpu_us'] / n:.1f} µs |")
out.append("")
out.append("*commands sent by the nodes*: both nodes' `rollcall_cluster_redis_commands_total`; "
           "the others from Redis's `INFO commandstats` (`INFO` itself left out) and `INFO cpu` "
           "(user + sys, so the Redis process's network work and Pub/Sub fan-out too), less "
           f"Redis's idle CPU ({idle_rate * 100:.2f} % of a core, measured over 2 s before). "
           "The nodes' liveness refreshes (one EVALSHA per node every --node-ttl / 4) fall "
           "into the same windows and are counted.\n")
out.append("Commands ($A and $B are the nodes' ports, $S the single server's):\n")
out.append("```")
for line in open(f"{raw}/commands.txt"):
    line = line.rstrip("\n")
    for name, port in (p.split("=") for p in env["PORTS"].split()):
        line = line.replace(f"127.0.0.1:{port}/", f"127.0.0.1:${name}/")
    out.append(line)
out.append("```")
print("\n".join(out))
EOF
cat "$OUT/cluster.md"
note "wrote $OUT/cluster.md"
exit "$FAILED"
