#!/usr/bin/env bash
# Webhook figures on this machine: delivery throughput into a local receiver (events/s), the
# server CPU a webhook adds per presence change, and the memory of one remembered last-seen
# entry.
#
# Usage: benches/webhooks.sh [N]      (N churn cycles, default 20000; each cycle is one user's
#                                      join and leave of the lobby: 2 presence changes, 2 to 4
#                                      webhook events)
#
# - CPU: `rollcall-load churn` against a server without webhooks, then one posting to a local
#   receiver; server CPU time (utime + stime from /proc) per cycle, the difference per change.
# - Throughput: the receiver starts only once the churn is over, so N cycles' events wait in
#   the queue; from the first acknowledged batch to the last, events/s (batches of 100, one
#   request in flight).
# - TLS: the loop thread's CPU time while a queue of N cycles' events drains into a local receiver, per
#   delivered batch (100 events), over http:// and over https:// (a throwaway openssl CA,
#   --webhook-ca, a Node https receiver; built here with the webhook-tls feature).
# - Last seen: RSS of a server after N distinct users came and went, with
#   --last-seen-capacity N and 0; the difference per user.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
cargo build --quiet --release --locked --features webhook-tls --bin rollcall --bin rollcall-load
LOAD=target/release/rollcall-load
SECRET=bench-secret

start_server() {
    local log
    log=$(mktemp)
    target/release/rollcall --listen 127.0.0.1:0 --rate-limit off "$@" 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        [[ -n $PORT ]] && return
        sleep 0.05
    done
    echo "webhooks.sh: the server did not start: $(cat "$log")" >&2
    exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The loop thread's CPU time in ns (schedstat: nanosecond resolution, where ticks are 10 ms).
cpu_ns() { awk '{print $1}' "/proc/$1/task/$1/schedstat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "localhost:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A receiver that counts and answers 200 (no validation: the server's cost is measured).
receiver() {
    node -e '
      const http = require("node:http");
      http.createServer((req, res) => {
        req.on("data", () => {});
        req.on("end", () => res.writeHead(200, {"Content-Length": "2"}).end("{}"));
      }).listen(Number(process.argv[1]), "127.0.0.1");' "$1" &
    RECEIVER_PID=$!
}

churn() {
    RUST_LOG=warn "$LOAD" churn --url "ws://127.0.0.1:$PORT/" --cycles "$N" --concurrency 50 >/dev/null
}

# CPU per cycle without and with webhooks.
TICK=$(getconf CLK_TCK)
start_server
before=$(cpu_ticks "$SERVER_PID"); churn; after=$(cpu_ticks "$SERVER_PID")
plain_ns=$(( (after - before) * 1000000000 / TICK / N ))
stop_server

HOOK_PORT=$(free_port)
receiver "$HOOK_PORT"
sleep 0.5
start_server --webhook "http://127.0.0.1:$HOOK_PORT/" --webhook-secret "$SECRET" --webhook-queue 1000000
before=$(cpu_ticks "$SERVER_PID"); churn
for _ in $(seq 200); do [[ $(metric rollcall_webhook_queued) == 0 ]] && break; sleep 0.05; done
after=$(cpu_ticks "$SERVER_PID")
hooked_ns=$(( (after - before) * 1000000000 / TICK / N ))
events=$(metric rollcall_webhook_events_sent_total)
stop_server
kill "$RECEIVER_PID"; wait "$RECEIVER_PID" 2>/dev/null || true

# Throughput: the events of N cycles queued while the receiver is down, then drained.
HOOK_PORT=$(free_port)
start_server --webhook "http://127.0.0.1:$HOOK_PORT/" --webhook-secret "$SECRET" --webhook-queue 1000000
churn
queued=$(metric rollcall_webhook_queued)
receiver "$HOOK_PORT"
first=""
while :; do
    sent=$(metric rollcall_webhook_events_sent_total)
    now=$(date +%s.%N)
    [[ -z $first && $sent != 0 ]] && { first=$now; first_sent=$sent; }
    [[ $(metric rollcall_webhook_queued) == 0 ]] && break
    sleep 0.01
done
rate=$(python3 -c "print(round(($sent - $first_sent) / max($now - $first, 1e-3)))")
stop_server
kill "$RECEIVER_PID"; wait "$RECEIVER_PID" 2>/dev/null || true

# CPU per delivered batch, http:// and https://: the queue fills while the receiver is down,
# then the server's CPU time from the receiver's start until the queue is empty.
TLS_DIR=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$TLS_DIR/ext"
openssl x509 -req -in "$TLS_DIR/req.pem" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 1 -extfile "$TLS_DIR/ext" -out "$TLS_DIR/cert.pem" 2>/dev/null
tls_receiver() {
    node -e '
      const fs = require("node:fs"), https = require("node:https");
      const dir = process.argv[2];
      https.createServer({key: fs.readFileSync(dir + "/key.pem"),
                          cert: fs.readFileSync(dir + "/cert.pem")}, (req, res) => {
        req.on("data", () => {});
        req.on("end", () => res.writeHead(200, {"Content-Length": "2"}).end("{}"));
      }).listen(Number(process.argv[1]), "127.0.0.1");' "$1" "$TLS_DIR" &
    RECEIVER_PID=$!
}
drain_cpu() {  # drain_cpu SCHEME RECEIVER_FUNCTION: prints ns of server CPU per batch
    HOOK_PORT=$(free_port)
    start_server --webhook "$1://127.0.0.1:$HOOK_PORT/" --webhook-secret "$SECRET" \
        --webhook-queue 1000000 --webhook-ca "$TLS_DIR/ca.pem"
    churn
    local events before after
    events=$(metric rollcall_webhook_queued)
    before=$(cpu_ns "$SERVER_PID")
    "$2" "$HOOK_PORT"
    while [[ $(metric rollcall_webhook_queued) != 0 ]]; do sleep 0.01; done
    after=$(cpu_ns "$SERVER_PID")
    stop_server
    kill "$RECEIVER_PID"; wait "$RECEIVER_PID" 2>/dev/null || true
    echo $(( (after - before) * 100 / events ))
}
http_batch_ns=$(drain_cpu http receiver)
https_batch_ns=$(drain_cpu https tls_receiver)
rm -rf "$TLS_DIR"

# Memory per last-seen entry.
rss_after_churn() {
    start_server "$@"
    churn
    sleep 0.2
    RSS=$(rss_kib "$SERVER_PID")
    stop_server
}
rss_after_churn --last-seen-capacity "$N"; with=$RSS
rss_after_churn --last-seen-capacity 0; without=$RSS
per_entry=$(( (with - without) * 1024 / N ))

echo "| figure | value |"
echo "|---|---|"
echo "| server CPU per churn cycle, no webhook | ${plain_ns} ns |"
echo "| server CPU per churn cycle, webhook to a local receiver | ${hooked_ns} ns ($events events) |"
echo "| added CPU per presence change (2 per cycle; CPU time is sampled in 1/$TICK s) | $(( (hooked_ns - plain_ns) / 2 )) ns |"
echo "| webhook throughput, $queued queued events drained | ${rate} events/s |"
echo "| server CPU per delivered batch of 100 events, http:// | ${http_batch_ns} ns |"
echo "| server CPU per delivered batch of 100 events, https:// | ${https_batch_ns} ns |"
echo "| memory per remembered last-seen entry | ${per_entry} bytes |"
