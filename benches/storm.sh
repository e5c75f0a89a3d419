#!/usr/bin/env bash
# Reconnect storm: N clients connect at once to one channel (rollcall-load storm) with the
# server's default flags, in events mode all and diff; we report how many were admitted and
# refused, how long until every client knew all N members, and what each client received.
#
# Usage: benches/storm.sh [N...]   (default: 1000 3000 10000 15000)
#   MODES="none all diff"   events modes to run (none: admission alone)   ALL_MAX=3000 largest N run with events=all (its
#   cost is N²/2 messages: 10,000 would be 50 million)
#   PROCS=2   load-tool processes sharing the clients: the N² member entries the clients read
#   between them cost the load tool more CPU than the server, and one process would be the
#   ceiling of the measurement
# Prints a Markdown table on stdout; the load tool's JSON per run goes to
# target/bench-report/storm/.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-1000 3000 10000 15000}
MODES=${MODES:-none all diff}
ALL_MAX=${ALL_MAX:-3000}
PROCS=${PROCS:-2}
OUT=target/bench-report/storm
LOAD=target/release/rollcall-load
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --quiet --release --locked --bin rollcall --bin rollcall-load
echo "| N | events | admitted | refused/failed | convergence | messages/client | KiB/client |"
echo "|---|---|---|---|---|---|---|"
for n in $SIZES; do
    for mode in $MODES; do
        [[ $mode == all && $n -gt $ALL_MAX ]] && continue
        log=$OUT/server-$n-$mode.log
        target/release/rollcall --listen 127.0.0.1:0 >"$log" 2>&1 &
        server=$!
        for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.1; done
        addr=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)
        json=$OUT/$n-$mode.json
        # --in-flight N: every client connects at once.
        "$LOAD" storm --url "ws://$addr/" --members "$n" --events "$mode" --in-flight "$n" \
            --procs "$PROCS" --timeout 120s --json >"$json" 2>/dev/null || true
        kill "$server"
        wait "$server" 2>/dev/null || true
        python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
conv = "-" if r["convergence_s"] is None else f'{r["convergence_s"]:.2f} s'
print(f'| {r["members"]} | {r["events"]} | {r["admitted"]} | {r["failed"]} | {conv} '
      f'| {r["messages_per_client"]:.1f} | {r["bytes_per_client"] / 1024:.1f} |')
PY
    done
done
