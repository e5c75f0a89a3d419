#!/usr/bin/env bash
# Pusher connections beside native ones, in the same run on the same machine: memory per idle
# connection and server CPU per handshake (rollcall-load hold --server-pid), and fan-out of
# events to N subscribers (native POST /publish beside the Pusher REST API's signed events).
#
# Usage: benches/pusher.sh [N]        (N connections or subscribers, default 15000)
#   SOURCES=4  source addresses of the load tool;  RUNS=2  fan-out runs of each kind
#
# Rows: native (events=none, one channel: the density method), Pusher presence (channels of
# 100 members, Pusher's limit: snapshot, member_added and an HMAC per subscribe), Pusher
# public channel (no signature, no members). Prints a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-15000}
SOURCES=${SOURCES:-4}
RUNS=${RUNS:-2}
APP=1:bench-key:bench-secret
cargo build --quiet --release --locked --bin rollcall --bin rollcall-load
LOAD=target/release/rollcall-load

# Starts a server on a free port; sets SERVER_PID and PORT.
start_server() {
    local log
    log=$(mktemp)
    target/release/rollcall --listen 127.0.0.1:0 --pusher-app "$APP" --heartbeat-interval 2s \
        --heartbeat-timeout 10s --max-backlog 4MiB "$@" 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        [[ -n $PORT ]] && return
        sleep 0.05
    done
    echo "pusher.sh: the server did not start: $(cat "$log")" >&2
    exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }

hold() {
    start_server
    RUST_LOG=warn "$LOAD" hold --url "ws://127.0.0.1:$PORT/" --connections "$N" --sources "$SOURCES" \
        --duration 5s --server-pid "$SERVER_PID" --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["server"]; assert d["ok"], d; print("{:,.0f} B | {:.1f} µs".format(s["bytes_per_connection"], s["cpu_us_per_handshake"]))'
    stop_server
}

fanout() {
    start_server
    RUST_LOG=warn "$LOAD" fanout --url "ws://127.0.0.1:$PORT/" --subscribers "$N" --sources "$SOURCES" \
        --messages 40 --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"], d; print("{:,.0f}".format(d["delivered_per_second"]))'
    stop_server
}

echo "| $N connections | bytes per idle connection | server CPU per handshake (subscribe included) |"
echo "|---|--:|--:|"
echo "| native, \`events=none\` in one channel | $(hold --query 'events=none&channel=big') |"
echo "| Pusher, presence channels of 100 members | $(hold --pusher "$APP") |"
echo
echo "| fan-out: $N subscribers x 40 events | deliveries/s, run by run |"
echo "|---|--:|"
native=() pusher=()
for _ in $(seq "$RUNS"); do
    native+=("$(fanout)")
    pusher+=("$(fanout --pusher "$APP")")
done
echo "| native, \`POST /publish\` | ${native[*]} |"
echo "| Pusher, public channel, signed \`POST /apps/1/events\` | ${pusher[*]} |"
