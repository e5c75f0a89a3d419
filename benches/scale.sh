#!/usr/bin/env bash
# How far idle presence scales on this machine, and what a million connections would cost:
# SERVERS rollcall processes share one port (--reuse-port), the load tool holds N idle present
# connections over several processes and source addresses, and we read what the servers
# (userspace) and the kernel (socket slabs and buffers) hold per connection.
#
# Usage:
#     benches/scale.sh [N]
#
# Settings (environment; N may also be the first argument):
#     N=54000        connections in all (each server process stays under its ~19,000 open files)
#     SERVERS=4      rollcall processes on one port
#     PROCS=3        load processes (each under the open-file limit)
#     SOURCES=8      source addresses 127.0.0.2 .. 127.0.0.(SOURCES+1)
#     HOLD=6s        how long the connections are held once all are up (heartbeat 2 s)
#     OUT=target/bench-report/scale.md
#
# Kernel memory: both ends of every connection are on this machine (loopback), so the kernel's
# growth (Slab + TCP buffer pages, from /proc/meminfo and /proc/net/sockstat) is halved to get
# the server side's share. Needs a release build (built here unless SKIP_BUILD=1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

N=${1:-${N:-54000}}
SERVERS=${SERVERS:-4}
PROCS=${PROCS:-3}
SOURCES=${SOURCES:-8}
HOLD=${HOLD:-6s}
OUT=${OUT:-target/bench-report/scale.md}
BIN=target/release/rollcall
LOAD=target/release/rollcall-load

[[ $N =~ ^[0-9]+$ ]] || { echo "scale.sh: N must be a number" >&2; exit 2; }
if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo build --release --locked --bin rollcall --bin rollcall-load >&2
fi
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$OUT")"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

kib() { awk -v key="$1:" '$1 == key { print $2 }' /proc/meminfo; }
tcp_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
servers_rss_kib() {
    local total=0
    for pid in "${pids[@]}"; do
        total=$((total + $(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")))
    done
    echo "$total"
}

for _ in $(seq "$SERVERS"); do
    "$BIN" --listen "127.0.0.1:$port" --reuse-port --heartbeat-interval 2s \
        --heartbeat-timeout 10s >/dev/null 2>&1 &
    pids+=("$!")
done
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

rss_before=$(servers_rss_kib)
slab_before=$(kib Slab)
tcp_before=$(tcp_pages)
# Sample while every connection is held: a server's open files are its connections plus
# the few it had before (listener, poll, waker, standard streams).
open_files() {
    local total=0
    for pid in "${pids[@]}"; do
        total=$((total + $(ls "/proc/$pid/fd" 2>/dev/null | wc -l)))
    done
    echo "$total"
}
files_before=$(open_files)
"$LOAD" hold --url "ws://127.0.0.1:$port/" --connections "$N" --procs "$PROCS" \
    --sources "$SOURCES" --duration "$HOLD" --timeout 300s \
    --query 'events=none&channel=big' >"$OUT.load.log" 2>&1 &
load=$!
held=0 rss_held=0 slab_held=0 tcp_held=0
while kill -0 "$load" 2>/dev/null; do
    if (($(open_files) - files_before >= N)); then
        held=1
        rss_held=$(servers_rss_kib)
        slab_held=$(kib Slab)
        tcp_held=$(tcp_pages)
    fi
    sleep 0.5
done
wait "$load" || { echo "scale.sh: the load tool failed:" >&2; tail -5 "$OUT.load.log" >&2; exit 1; }
((held > 0)) || { echo "scale.sh: never saw every connection held" >&2; exit 1; }

python3 - "$N" "$SERVERS" "$rss_before" "$rss_held" "$slab_before" "$slab_held" \
    "$tcp_before" "$tcp_held" "$(git rev-parse --short HEAD)" >"$OUT" <<'EOF'
import sys
n, servers, rss0, rss1, slab0, slab1, tcp0, tcp1, rev = sys.argv[1:]
n, servers = int(n), int(servers)
user = (int(rss1) - int(rss0)) * 1024 / n
kernel = ((int(slab1) - int(slab0)) * 1024 + (int(tcp1) - int(tcp0)) * 4096) / 2 / n
gib = 1 << 30
print(f"# Scale: {n:,} idle present connections over {servers} rollcall processes (rollcall {rev})\n")
print("| | bytes per connection | for 1,000,000 connections | connections per GiB |")
print("|---|--:|--:|--:|")
for name, per in (("rollcall (servers' RSS)", user), ("kernel, server side (half of Slab + TCP buffers)", kernel), ("together", user + kernel)):
    print(f"| {name} | {per:,.0f} | {per * 1e6 / gib:,.2f} GiB | {gib / per:,.0f} |")
print("\nMeasured with `benches/scale.sh` (every client a distinct user in one channel, `events=none`,"
      " heartbeat 2 s); the kernel's share is estimated from the growth of /proc/meminfo's Slab and"
      " /proc/net/sockstat's TCP pages, halved because both ends are on this machine.")
EOF
cat "$OUT"
