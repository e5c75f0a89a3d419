"""Reference peer for benches/density.sh: a WebSocket server written the way users of the
`websockets` package write one (its asyncio implementation, default settings).

Heartbeat, as rollcall's, by the library's keepalive: a ping every INTERVAL (`ping_interval`),
and the connection is closed when that ping has no pong within another INTERVAL
(`ping_timeout`), so a silent client goes about two intervals after its last frame. It keeps
no presence state: it only holds connections, so it is a lower bound for a server that does
rollcall's job.

Usage: python3 server.py [PORT] [INTERVAL]     (or env PORT, INTERVAL)
  PORT      0 (the default) picks a free port
  INTERVAL  `2s`, `500ms` or seconds [default: 2s]
Prints `listening on 127.0.0.1:PORT` once bound; any path and query are accepted.
"""

import asyncio
import os
import re
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def setting(index, name, default):
    if len(sys.argv) > index:
        return sys.argv[index]
    return os.environ.get(name, default)


def parse_interval(text):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", text.strip())
    if not match:
        sys.exit(f"invalid interval {text!r}: use 2s, 500ms or seconds")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


async def hold(websocket):
    # Read (and drop) whatever the client sends until it goes; the library answers pings
    # and sends its own on the keepalive timer meanwhile.
    try:
        async for _ in websocket:
            pass
    except ConnectionClosed:
        pass  # dropped by the keepalive or the peer went without a Close: nothing to do


async def main():
    port = int(setting(1, "PORT", "0"))
    interval = parse_interval(setting(2, "INTERVAL", "2s"))
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        hold, "127.0.0.1", port, ping_interval=interval, ping_timeout=interval
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
