#!/usr/bin/env bash
# Leak check of the real server: builds `rollcall` and `rollcall-load` with LeakSanitizer,
# starts the server, drives it through every way a connection can come and go (churn with
# leave grace, count mode, fan-out, presence latency, held connections answering Pings, a
# load process killed mid-run, a silent peer timed out, a watcher, operator endpoints, bad
# requests), then stops it with SIGTERM so it exits normally and LSan checks it at exit.
#
# Usage: jobs/leak.sh [CYCLES]
#   CYCLES      churn cycles of the first churn run [default: 5000]
#   LEAK_TESTS=1 jobs/leak.sh
#               also runs `cargo test --test load_smoke` built with LSan: the test process
#               and every load-tool process it starts are checked at exit (the servers
#               those tests start are killed, so they are not: that is what the run above
#               is for)
#
# Exit status 0 when no process leaked; 1 otherwise, with LSan's report printed. Logs in
# target/leak/. Needs no extra package: the sanitizer runtime ships with the Rust toolchain
# (stable works, with RUSTC_BOOTSTRAP=1 for -Zsanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=${1:-5000}
triple=$(rustc -vV | sed -n 's/^host: //p')
out=target/leak
mkdir -p "$out"
export RUSTC_BOOTSTRAP=1
# --target keeps these artifacts apart from the ordinary ones in target/debug.
export RUSTFLAGS="-Zsanitizer=leak -Cforce-frame-pointers=yes"
echo "== building with LeakSanitizer for $triple"
cargo build --locked --target "$triple" --workspace --bins
bin=target/$triple/debug
if ! nm "$bin/rollcall" | grep -c '__lsan' >/dev/null; then
    echo "== $bin/rollcall carries no LSan runtime" >&2
    exit 1
fi
# LSan's exit code for a leak is distinct from every status the tools use themselves.
export LSAN_OPTIONS="exitcode=23:print_suppressions=0:report_objects=0"
export RUST_BACKTRACE=0

server_log=$out/server.log
"$bin/rollcall" --listen 127.0.0.1:0 --leave-grace 300ms --heartbeat-interval 1s \
    --heartbeat-timeout 2s --client-publish 2>"$server_log" &
server=$!
cleanup() { kill -KILL "$server" 2>/dev/null || true; }
trap cleanup EXIT
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$server_log" | head -n1)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "== the server did not start:" >&2; cat "$server_log" >&2; exit 1; }
host=${addr%:*}
port=${addr##*:}
url="ws://$addr/"
echo "== server pid $server on $addr"

failures=0
# Runs the load tool; its own leaks count too.
load() {
    local name=$1
    shift
    echo "== load $name: $*"
    local status=0
    "$bin/rollcall-load" "$@" --url "$url" --timeout 60s >"$out/load-$name.out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "== load $name FAILED (status $status):"
        tail -n 30 "$out/load-$name.out"
        failures=$((failures + 1))
    fi
    tail -n 3 "$out/load-$name.out"
}

# A raw upgrade that then stays silent (never answers a Ping): dropped after the timeout.
upgrade_request() {
    printf 'GET /?%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' "$1"
}
exec 3<>"/dev/tcp/$host/$port"
upgrade_request 'user=silent&channel=quiet' >&3
exec 4<>"/dev/tcp/$host/$port"
upgrade_request 'watch=*' >&4
exec 5<>"/dev/tcp/$host/$port"
printf 'GET / HTTP/1.1\r\nHost: x\r\n' >&5 # a handshake left half-done

load churn churn --cycles "$cycles" --concurrency 50
load counted hold --connections 200 --duration 2s --query 'events=count&channel=counted'
load fanout fanout --subscribers 200 --messages 20
load latency presence-latency --members 100 --samples 20
load hold hold --connections 300 --duration 3s
# A load process killed mid-run: every connection ends without a Close.
"$bin/rollcall-load" hold --url "$url" --connections 200 --duration 60s >"$out/load-killed.out" 2>&1 &
victim=$!
sleep 2
kill -KILL "$victim" 2>/dev/null || true
wait "$victim" 2>/dev/null || true

echo "== endpoints and refusals"
for path in /healthz /metrics /presence /presence/churn '/presence/counted?count' / /nope /ws; do
    curl -s -o /dev/null -w "%{http_code} $path\n" "http://$addr$path" || true
done
curl -s -o /dev/null -w "%{http_code} POST /publish\n" \
    -d '{"channels":["churn","fanout"],"data":{"n":1}}' "http://$addr/publish" || true
curl -s -o /dev/null -w "%{http_code} oversized\n" -H 'Content-Length: 99999999' \
    -X POST "http://$addr/publish" || true
printf '\x16\x03\x01garbage\r\n\r\n' | timeout 5 bash -c "cat >/dev/tcp/$host/$port" || true

sleep 3 # the silent peer's timeout (2 s) passes
exec 3>&- 4>&- 5>&-
sleep 1

# Leaks LSan cannot see (memory still reachable): nothing may be left in the books.
echo "== books after the traffic"
all_metrics=$(curl -s "http://$addr/metrics")
# How the connections ended, to show every path ran (timeout: the silent peer).
echo "$all_metrics" | grep -E '^rollcall_connections_(accepted|closed)_total' || true
metrics=$(echo "$all_metrics" | grep -E '^rollcall_(connections|handshakes_pending|users_online|channels) ' || true)
echo "$metrics"
# The /metrics request itself is the one pending handshake.
for expected in connections=0 handshakes_pending=1 users_online=0 channels=0; do
    gauge=${expected%=*}
    value=$(echo "$metrics" | awk -v name="rollcall_$gauge" '$1 == name { print $2 }')
    if [ "$value" != "${expected#*=}" ]; then
        echo "== rollcall_$gauge is ${value:-missing} after every peer left, not ${expected#*=}"
        failures=$((failures + 1))
    fi
done

echo "== SIGTERM"
kill -TERM "$server"
status=0
wait "$server" || status=$?
trap - EXIT
echo "== server exited with status $status"
if grep -q 'LeakSanitizer' "$server_log"; then
    echo "== the server LEAKED:"
    sed -n '/LeakSanitizer/,$p' "$server_log"
    failures=$((failures + 1))
elif [ "$status" -ne 0 ]; then
    echo "== the server exited with $status; its log ends:"
    tail -n 30 "$server_log"
    failures=$((failures + 1))
fi
if grep -l 'LeakSanitizer' "$out"/load-*.out 2>/dev/null; then
    echo "== the load tool LEAKED (see the files above)"
    failures=$((failures + 1))
fi

if [ "${LEAK_TESTS:-0}" = 1 ]; then
    echo "== cargo test --test load_smoke under LSan"
    cargo test --locked --target "$triple" --test load_smoke || failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
    echo "== leak check FAILED ($failures problems)"
    exit 1
fi
echo "== no leak: the server ran $cycles churn cycles and every other mode, and exited cleanly"
