#!/usr/bin/env bash
# RFC 6455 conformance: the Autobahn test-suite cases, run by kosoku's fuzzing client against
# examples/echo.rs, an echo server on rollcall's own event loop and connection handling.
#
# Usage:
#     conformance/autobahn.sh [KOSOKU_ARGS...]
#
# Runs every case but 12.* and 13.* (permessage-deflate, which rollcall does not negotiate);
# extra arguments go to kosoku after those, e.g. `-i '9.*'` for the 9.x cases alone or
# `-i 7.1.6` for one case.
#
# Settings (environment):
#     TIMEOUT=300     seconds the kosoku run may take before it is stopped (a full run takes
#                     about 12 s on a 2-core machine)
#     OUT=target/conformance/report   where the report goes (emptied first)
#     PROFILE=release the cargo profile of the echo example: release, or dev (the debug build
#                     that `cargo test` already made: no second build in CI, same results)
#     SKIP_BUILD=1    use the echo example already built
#
# Needs cargo and python3 (with venv); installs kosoku from PyPI on first use into a venv
# under target/conformance/venv.
#
# Writes OUT/index.html (open it in a browser), OUT/index.json and one JSON + HTML file per
# case, named after the agent (the echo server's address) and the case id. Prints one line:
#     autobahn: N OK, N NON-STRICT, N INFORMATIONAL, N FAILED
# followed by one line per failed case. Exit status: kosoku's (0 when every case passed, 1
# when any failed), 1 also when the report is missing or the echo server died during the
# run, 124 when TIMEOUT ran out, 2 for invalid settings.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KOSOKU_VERSION=0.1.0
TIMEOUT=${TIMEOUT:-300}
OUT=${OUT:-target/conformance/report}
WORK=target/conformance
VENV=$WORK/venv
PROFILE=${PROFILE:-release}

die() {
    echo "autobahn.sh: $*" >&2
    exit 2
}
note() { echo "== $*" >&2; }

[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive number of seconds, not '$TIMEOUT'"
case $PROFILE in
release) ECHO=${CARGO_TARGET_DIR:-target}/release/examples/echo ;;
dev) ECHO=${CARGO_TARGET_DIR:-target}/debug/examples/echo ;;
*) die "PROFILE must be release or dev, not '$PROFILE'" ;;
esac

server_pid=
child_pid=
# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
    if [[ -n $child_pid ]]; then
        kill -TERM "$child_pid" 2>/dev/null || true # timeout passes it on to kosoku
        wait "$child_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]]; then
        # SIGTERM starts the echo server's graceful shutdown: at most --shutdown-timeout (5 s).
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK"

if [[ -z ${SKIP_BUILD:-} ]]; then
    note "building the echo example ($PROFILE)"
    cargo build --profile "$PROFILE" --locked --example echo
fi
[[ -x $ECHO ]] || die "$ECHO is missing (run without SKIP_BUILD)"

installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' \
    2>/dev/null || true)
if [[ $installed != "$KOSOKU_VERSION" ]]; then
    note "installing kosoku $KOSOKU_VERSION into $VENV"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

# The echo server binds port 0 and prints `listening on ADDR` once bound.
"$ECHO" 127.0.0.1:0 >"$WORK/echo.out" 2>"$WORK/echo.log" &
server_pid=$!
address=
for _ in $(seq 100); do
    address=$(sed -n 's/^listening on //p' "$WORK/echo.out")
    [[ -n $address ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $address ]]; then
    echo "autobahn.sh: the echo server did not start:" >&2
    cat "$WORK/echo.log" >&2
    exit 1
fi

rm -rf "$OUT"
note "kosoku $KOSOKU_VERSION -m fuzzingclient -x '12.*' -x '13.*' ${*:+$* }against ws://$address"
started=$SECONDS
status=0
# In the background, so that a signal to this script runs the trap at once (bash defers traps
# while a foreground command runs, and `timeout` leaves the terminal's process group).
timeout --kill-after=10 "$TIMEOUT" "$VENV/bin/kosoku" -m fuzzingclient -x '12.*' -x '13.*' \
    -o "$OUT" "$@" "$address" &
child_pid=$!
wait "$child_pid" || status=$?
child_pid=
elapsed=$((SECONDS - started))
if ((status == 124 || status == 137)); then
    echo "autobahn.sh: kosoku did not finish within ${TIMEOUT}s" >&2
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "autobahn.sh: the echo server exited during the run:" >&2
    tail -n 20 "$WORK/echo.log" >&2
    ((status != 0)) || status=1
fi

# Each case counts under its behavior (the message exchange), or as FAILED when kosoku did not
# pass it: a behavior other than OK / NON-STRICT / INFORMATIONAL, or a closing behavior other
# than OK / INFORMATIONAL (UNCLEAN, WRONG CODE, FAILED BY CLIENT, FAILED).
if [[ -f $OUT/index.json ]]; then
    summary=0
    "$VENV/bin/python" - "$OUT/index.json" "$elapsed" <<'EOF' || summary=$?
import json
import sys

index = json.load(open(sys.argv[1]))
counts = {"OK": 0, "NON-STRICT": 0, "INFORMATIONAL": 0, "FAILED": 0}
failed = []
for agent in index.values():
    for case_id, case in agent.items():
        behavior, close = case["behavior"], case["behaviorClose"]
        if behavior in ("OK", "NON-STRICT", "INFORMATIONAL") and close in ("OK", "INFORMATIONAL"):
            counts[behavior] += 1
        else:
            counts["FAILED"] += 1
            failed.append((case_id, behavior, close, case["remoteCloseCode"], case["reportfile"]))
print("autobahn: " + ", ".join(f"{n} {label}" for label, n in counts.items()) + f" ({sys.argv[2]} s)")
failed.sort(key=lambda f: [int(part) for part in f[0].split(".")])
for case_id, behavior, close, code, report in failed:
    print(f"  FAILED {case_id}: behavior {behavior}, close {close}, peer's close code {code} ({report})")
sys.exit(1 if failed else 0)
EOF
    ((summary == 0 || status != 0)) || status=1
    note "report: $OUT/index.html"
else
    echo "autobahn: no report (kosoku exited with status $status)"
    ((status != 0)) || status=1
fi
exit "$status"
