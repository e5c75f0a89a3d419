#!/usr/bin/env bash
# Idle-connection density, side by side: rollcall and three reference servers (benches/peers/)
# each hold the same N idle WebSocket connections, heartbeat included, and we compare the
# server's memory per connection and the handshakes per second it took them at.
#
# Usage:
#     benches/density.sh [N]
#
# Settings (environment; N may also be the first argument):
#     N=15000         connections per server
#     INTERVAL=2s     heartbeat interval of every server (500ms, 2s, ...); rollcall also gets
#                     --heartbeat-timeout ROLLCALL_TIMEOUT [default: 10s, at least 2 x INTERVAL]
#     HOLD            how long the connections are held once all are up, so that every client
#                     answers at least one ping [default: 2.5 x INTERVAL]
#     SOURCES=4       source addresses 127.0.0.2 .. 127.0.0.(SOURCES+1) of the load tool
#     TIMEOUT=120s    limit of the load tool's connect phase
#     SERVERS="rollcall bun node-ws tokio-tungstenite python-websockets"   which ones, in order
#     OUT=target/bench-report   where the report goes
#     SKIP_BUILD=1    use what is already built and installed
#     SKIP_CHECK=1    skip the heartbeat smoke check (benches/peers/check.py) of each server
#
# Needs cargo, node + npm and python3 (with venv); installs the peers' packages from the npm
# registry and PyPI on first use (node_modules under benches/peers/node-ws and
# benches/peers/bun (Bun 1.4 is an npm package: a single binary), a venv under
# target/peers/venv). Takes about a minute per server at N = 15000 after the builds.
#
# Writes OUT/density.md (table), OUT/density.svg (chart), OUT/results.json (everything:
# machine, settings, versions, the load tool's JSON per server), and OUT/raw/ + OUT/logs/.
# Exit status 0 when every server held every connection, 1 otherwise (the report still
# shows what happened), 2 for invalid settings.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

N=${1:-${N:-15000}}
INTERVAL=${INTERVAL:-2s}
SOURCES=${SOURCES:-4}
TIMEOUT=${TIMEOUT:-120s}
SERVERS=${SERVERS:-rollcall bun node-ws tokio-tungstenite python-websockets}
OUT=${OUT:-target/bench-report}
PEERS=benches/peers
VENV=target/peers/venv
LOAD=target/release/rollcall-load

die() {
    echo "density.sh: $*" >&2
    exit 2
}
note() { echo "== $*" >&2; }

# `2s`, `500ms`, `2m` or seconds -> milliseconds.
duration_ms() {
    local text=$1
    case $text in
    *ms) text=${text%ms} && [[ $text =~ ^[0-9]+$ ]] && echo "$text" && return ;;
    *s) text=${text%s} && [[ $text =~ ^[0-9]+$ ]] && echo $((text * 1000)) && return ;;
    *m) text=${text%m} && [[ $text =~ ^[0-9]+$ ]] && echo $((text * 60000)) && return ;;
    *) [[ $text =~ ^[0-9]+$ ]] && echo $((text * 1000)) && return ;;
    esac
    return 1
}

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive whole number, not '$N'"
[[ $SOURCES =~ ^[1-9][0-9]*$ ]] || die "SOURCES must be a positive whole number"
INTERVAL_MS=$(duration_ms "$INTERVAL") || die "INTERVAL must look like 2s or 500ms, not '$INTERVAL'"
((INTERVAL_MS > 0)) || die "INTERVAL must be more than 0"
HOLD_MS=$(duration_ms "${HOLD:-$((INTERVAL_MS * 5 / 2))ms}") || die "HOLD must look like 5s"
TIMEOUT_MS=$(duration_ms "$TIMEOUT") || die "TIMEOUT must look like 120s"
default_rollcall_timeout=$((INTERVAL_MS * 2 > 10000 ? INTERVAL_MS * 2 : 10000))
ROLLCALL_TIMEOUT_MS=$(duration_ms "${ROLLCALL_TIMEOUT:-${default_rollcall_timeout}ms}") ||
    die "ROLLCALL_TIMEOUT must look like 10s"
for server in $SERVERS; do
    case $server in
    rollcall | bun | node-ws | tokio-tungstenite | python-websockets) ;;
    *) die "unknown server '$server' in SERVERS" ;;
    esac
done

# Each server and the load tool hold N sockets: take the hard limit of open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < N + 64)); then
    die "open-file limit $(ulimit -n) is too small for N=$N (raise it or lower N)"
fi

# --------------------------------------------------------------------------- servers

SERVER_PID=""
CHILD_PID=""

# Runs a command under `timeout SECONDS`, in the background so that a signal to this script
# runs the trap at once (bash defers traps while a foreground command runs, and `timeout`
# leaves the terminal's process group, so Ctrl-C would not reach it).
bounded() {
    local seconds=$1 rc=0
    shift
    timeout --kill-after=10 "$seconds" "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true # timeout passes it on
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    stop_server
}

# Stops the running server, if any: SIGTERM, then SIGKILL after 15 s.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "density.sh: server $pid ignored SIGTERM for 15 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts server $1 on 127.0.0.1:0; sets SERVER_PID and SERVER_PORT once it printed
# `listening on 127.0.0.1:PORT` (within 30 s). Returns 1 with the reason on stderr otherwise.
start_server() {
    local name=$1 log=$OUT/logs/$1.log
    case $name in
    rollcall)
        ./target/release/rollcall --listen 127.0.0.1:0 \
            --heartbeat-interval "${INTERVAL_MS}ms" \
            --heartbeat-timeout "${ROLLCALL_TIMEOUT_MS}ms" >"$log" 2>&1 &
        ;;
    node-ws) node "$PEERS/node-ws/server.js" 0 "${INTERVAL_MS}ms" >"$log" 2>&1 & ;;
    bun)
        "$PEERS/bun/node_modules/.bin/bun" "$PEERS/bun/server.js" 0 "${INTERVAL_MS}ms" >"$log" 2>&1 &
        ;;
    tokio-tungstenite)
        target/peers/release/rollcall-peer-tokio-tungstenite 0 "${INTERVAL_MS}ms" >"$log" 2>&1 &
        ;;
    python-websockets)
        "$VENV/bin/python" "$PEERS/python-websockets/server.py" 0 "${INTERVAL_MS}ms" \
            >"$log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    SERVER_PORT=""
    local line
    for _ in $(seq 300); do
        line=$(grep -oE -m1 'listening on 127\.0\.0\.1:[0-9]+' "$log" || true)
        if [[ -n $line ]]; then
            SERVER_PORT=${line##*:}
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$name exited before listening:" >&2
            tail -n 20 "$log" >&2
            SERVER_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "$name printed no 'listening on 127.0.0.1:PORT' within 30 s; its log:" >&2
    tail -n 20 "$log" >&2
    stop_server
    return 1
}

# The server's peak RSS (VmHWM) and CPU time so far, as JSON, from /proc.
server_meta() {
    python3 - "$1" <<'EOF'
import json, os, sys
pid = sys.argv[1]
status = open(f"/proc/{pid}/status").read().splitlines()
hwm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ticks = int(fields[11]) + int(fields[12])
print(json.dumps({"vmhwm_bytes": hwm, "cpu_seconds": ticks / os.sysconf("SC_CLK_TCK")}))
EOF
}

# --------------------------------------------------------------------------- build

mkdir -p "$OUT/raw" "$OUT/logs"
rm -f "$OUT"/raw/*.json "$OUT"/raw/*.error

if [[ -z ${SKIP_BUILD:-} ]]; then
    note "building rollcall and rollcall-load (release)"
    cargo build --release --locked --bin rollcall --bin rollcall-load
    for server in $SERVERS; do
        case $server in
        node-ws)
            note "installing the node-ws peer (npm ci)"
            (cd "$PEERS/node-ws" && npm ci --no-audit --no-fund --loglevel=error)
            ;;
        bun)
            note "installing the bun peer (npm ci: Bun itself, from the npm registry)"
            (cd "$PEERS/bun" && npm ci --no-audit --no-fund --loglevel=error)
            ;;
        tokio-tungstenite)
            note "building the tokio-tungstenite peer (release)"
            cargo build --release --locked \
                --manifest-path "$PEERS/tokio-tungstenite/Cargo.toml" --target-dir target/peers
            ;;
        python-websockets)
            note "installing the python-websockets peer into $VENV"
            [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
            "$VENV/bin/pip" install --quiet --disable-pip-version-check \
                -r "$PEERS/python-websockets/requirements.txt"
            ;;
        esac
    done
fi
[[ -x $LOAD ]] || die "$LOAD is missing (run without SKIP_BUILD)"
"$LOAD" --help 2>&1 | grep -q -- '--server-pid' || die "$LOAD has no hold --server-pid"

# --------------------------------------------------------------------------- machine

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
settings="N=$N INTERVAL=$INTERVAL SOURCES=$SOURCES"
COMMIT=$commit SETTINGS=$settings SERVERS=$SERVERS \
    INTERVAL_TEXT=$INTERVAL INTERVAL_MS=$INTERVAL_MS HOLD_MS=$HOLD_MS N=$N SOURCES=$SOURCES \
    ROLLCALL_TIMEOUT_MS=$ROLLCALL_TIMEOUT_MS VENV=$VENV PEERS=$PEERS \
    python3 - >"$OUT/raw/machine.json" <<'EOF'
import datetime, json, os, platform, re, subprocess

def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return None

def lock_version(path, crate):
    try:
        text = open(path).read()
    except OSError:
        return None
    match = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), text)
    return match and match.group(1)

meminfo = open("/proc/meminfo").read()
cpuinfo = open("/proc/cpuinfo").read()
model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
os_name = None
if os.path.exists("/etc/os-release"):
    os_name = re.search(r'^PRETTY_NAME="?([^"\n]*)', open("/etc/os-release").read(), re.M)
    os_name = os_name and os_name.group(1)
ws_package = os.path.join(os.environ["PEERS"], "node-ws/node_modules/ws/package.json")
bun_binary = os.path.join(os.environ["PEERS"], "bun/node_modules/.bin/bun")
venv_python = os.path.join(os.environ["VENV"], "bin/python")
peer_lock = os.path.join(os.environ["PEERS"], "tokio-tungstenite/Cargo.lock")
versions = {
    "rustc": (run("rustc", "--version") or "").removeprefix("rustc ").split(" (")[0] or None,
    "tungstenite (rollcall)": lock_version("Cargo.lock", "tungstenite"),
    "node": run("node", "--version"),
    "ws": os.path.exists(ws_package) and json.load(open(ws_package)).get("version"),
    "bun": os.path.exists(bun_binary) and run(bun_binary, "--version"),
    "tokio": lock_version(peer_lock, "tokio"),
    "tokio-tungstenite": lock_version(peer_lock, "tokio-tungstenite"),
    "python": os.path.exists(venv_python)
    and (run(venv_python, "--version") or "").removeprefix("Python "),
    "websockets": os.path.exists(venv_python)
    and run(venv_python, "-c", "import websockets; print(websockets.__version__)"),
}
interval_ms, hold_ms = int(os.environ["INTERVAL_MS"]), int(os.environ["HOLD_MS"])
print(json.dumps({
    "servers": os.environ["SERVERS"].split(),
    "machine": {
        "nproc": os.cpu_count(),
        "memory_bytes": int(re.search(r"^MemTotal:\s*(\d+)", meminfo, re.M).group(1)) * 1024,
        "cpu_model": model and model.group(1).strip(),
        "kernel": platform.release(),
        "os": os_name,
        "open_file_limit": int(run("sh", "-c", "ulimit -n") or 0),
        "somaxconn": int(open("/proc/sys/net/core/somaxconn").read()),
    },
    "run": {
        "connections": int(os.environ["N"]),
        "interval": os.environ["INTERVAL_TEXT"],
        "interval_ms": interval_ms,
        "hold": f"{hold_ms / 1000:g}s",
        "hold_ms": hold_ms,
        "rollcall_heartbeat_timeout_ms": int(os.environ["ROLLCALL_TIMEOUT_MS"]),
        "sources": int(os.environ["SOURCES"]),
        # Other work on the machine skews handshakes/s (not memory): note how busy it was.
        "loadavg_at_start": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "rollcall_commit": os.environ["COMMIT"],
        "command": f"{os.environ['SETTINGS']} benches/density.sh",
    },
    "versions": {k: v for k, v in versions.items() if v},
}, indent=2))
EOF

# --------------------------------------------------------------------------- runs

failed=0
interval_s=$(python3 -c "print($INTERVAL_MS / 1000)")
# The load tool's own limit: connect phase + hold + a minute for the rest.
load_limit=$(((TIMEOUT_MS + HOLD_MS) / 1000 + 60))

for server in $SERVERS; do
    raw=$OUT/raw/$server
    note "$server: starting"
    if ! start_server "$server" 2>"$raw.error"; then
        cat "$raw.error" >&2
        failed=1
        continue
    fi
    rm -f "$raw.error"
    note "$server: listening on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID)"

    if [[ -z ${SKIP_CHECK:-} ]]; then
        drop_flag=()
        [[ $server == rollcall ]] && drop_flag=(--no-drop)
        if ! bounded 60 python3 "$PEERS/check.py" "$SERVER_PORT" "$interval_s" "${drop_flag[@]}" \
            >"$OUT/logs/$server.check.log" 2>&1; then
            { echo "heartbeat smoke check failed:"; cat "$OUT/logs/$server.check.log"; } \
                >"$raw.error"
            cat "$raw.error" >&2
            stop_server
            failed=1
            continue
        fi
        note "$server: heartbeat check: $(head -1 "$OUT/logs/$server.check.log")"
    fi

    args=(hold --url "ws://127.0.0.1:$SERVER_PORT/" --connections "$N" --rate 0
        --sources "$SOURCES" --duration "${HOLD_MS}ms" --timeout "${TIMEOUT_MS}ms"
        --server-pid "$SERVER_PID" --json)
    if [[ $server == rollcall ]]; then
        args+=(--query 'events=none&channel=big')
    else
        args+=(--plain)
    fi
    note "$server: rollcall-load ${args[*]}"
    rc=0
    bounded "$load_limit" "$LOAD" "${args[@]}" \
        >"$raw.json" 2>"$OUT/logs/$server.load.log" || rc=$?
    cat "$OUT/logs/$server.load.log" >&2
    if ((rc != 0)); then
        case $rc in
        124 | 137) reason="the load tool did not finish within ${load_limit} s" ;;
        *)
            reason="the load tool exited with status $rc: $(
                grep -v '^ ' "$OUT/logs/$server.load.log" | tail -n 1 || true
            )"
            ;;
        esac
        echo "$reason" >"$raw.error"
        echo "density.sh: $server: $reason" >&2
        failed=1
    fi
    [[ -s $raw.json ]] || rm -f "$raw.json"

    if kill -0 "$SERVER_PID" 2>/dev/null; then
        server_meta "$SERVER_PID" >"$raw.meta.json" || rm -f "$raw.meta.json"
    else
        echo "the server died during the run; its log ends:" >>"$raw.error"
        tail -n 5 "$OUT/logs/$server.log" >>"$raw.error"
        SERVER_PID=""
        failed=1
    fi
    stop_server
done

note "report"
python3 benches/report.py "$OUT"
exit "$failed"
