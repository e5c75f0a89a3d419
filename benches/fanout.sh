#!/usr/bin/env bash
# Fan-out, side by side in one run: rollcall, Bun (Bun.serve, uWebSockets) and Node ws each
# hold N subscribers, then broadcast M publications (`POST /publish`, one after the other); we
# report deliveries per second and the server's CPU per delivery over the publications.
#
# Usage: benches/fanout.sh [N]
#   N=10000 subscribers   M=40 publications   RUNS=3 runs per server (the median is shown)
#   SOURCES=4 source addresses of the load tool   SERVERS="rollcall bun node-ws"
#   PROCS=2 processes the subscribers are spread over (rollcall-load --procs), so that one
#   reading process is not the ceiling
#
# The peers broadcast as their users do (Bun: `server.publish` to a topic, encoded once; Node
# ws: the README's loop over the clients, serialized once); rollcall's subscribers join one
# channel with `events=none`. Needs what benches/density.sh needs for those peers (it
# installs them on first use). Prints a Markdown table on stdout; the load tool's JSON per run
# goes to target/bench-report/fanout/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-${N:-10000}}
M=${M:-40}
RUNS=${RUNS:-3}
SOURCES=${SOURCES:-4}
PROCS=${PROCS:-2}
SERVERS=${SERVERS:-rollcall bun node-ws}
OUT=target/bench-report/fanout
PEERS=benches/peers
LOAD=target/release/rollcall-load
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --quiet --release --locked --bin rollcall --bin rollcall-load
for server in $SERVERS; do
    case $server in
    bun | node-ws) [[ -d $PEERS/$server/node_modules ]] ||
        (cd "$PEERS/$server" && npm ci --no-audit --no-fund --loglevel=error) ;;
    rollcall) ;;
    *) echo "fanout.sh: unknown server $server" >&2 && exit 2 ;;
    esac
done

# Starts server $1; sets SERVER_PID and PORT.
start() {
    local log=$OUT/$1.log
    case $1 in
    rollcall) target/release/rollcall --listen 127.0.0.1:0 --max-backlog 4MiB >"$log" 2>&1 & ;;
    bun) "$PEERS/bun/node_modules/.bin/bun" "$PEERS/bun/server.js" 0 30s >"$log" 2>&1 & ;;
    node-ws) node "$PEERS/node-ws/server.js" 0 30s >"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 300); do
        PORT=$(grep -oE -m1 'listening on 127\.0\.0\.1:[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
        [[ -n $PORT ]] && return
        sleep 0.1
    done
    echo "fanout.sh: $1 did not start: $(cat "$log")" >&2
    exit 1
}

echo "| $N subscribers x $M publications, $PROCS receiving processes | deliveries/s (median of $RUNS) | server CPU per delivery (median) |"
echo "|---|--:|--:|"
for server in $SERVERS; do
    rates=() cpus=()
    for run in $(seq "$RUNS"); do
        start "$server"
        plain=()
        [[ $server == rollcall ]] || plain=(--plain)
        RUST_LOG=warn "$LOAD" fanout "${plain[@]}" --url "ws://127.0.0.1:$PORT/" --subscribers "$N" \
            --messages "$M" --sources "$SOURCES" --procs "$PROCS" --server-pid "$SERVER_PID" --json \
            >"$OUT/$server-$run.json" 2>"$OUT/$server-$run.log"
        kill "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
        read -r rate cpu < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"], d; print(int(d["delivered_per_second"]), d["server_cpu_us_per_delivery"])' "$OUT/$server-$run.json")
        rates+=("$rate") cpus+=("$cpu")
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    printf '| %s | %s (runs: %s) | %.2f µs |\n' "$server" "$(median "${rates[@]}")" "${rates[*]}" "$(median "${cpus[@]}")"
done
