#!/usr/bin/env python3
"""Idle-connection memory of a running rollcall: opens N WebSocket connections, each a
distinct user with events=none (as a big audience connects), waits for every `welcome`, and
prints the server's RSS delta per connection (from /proc/PID/status, the kernel's view).

Usage: python3 benches/idle_rss.py N PORT SERVER_PID [EXTRA_QUERY]
Example:
    cargo build --release
    ./target/release/rollcall --listen 127.0.0.1:18090 & python3 benches/idle_rss.py 5000 18090 $!

Standard library only; one process holds at most ~19k sockets under a 20000 open-file limit.
A stopgap until the load tool (rollcall-load) exists.
"""
import base64
import os
import socket
import sys
import time


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def open_idle(port, user, query):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /?user={user}&events=none{query} HTTP/1.1\r\nHost: bench\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    received = b""
    while b'"welcome"' not in received:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit(f"{user}: closed before welcome: {received!r}")
        received += chunk
    return sock


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    count, port, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    query = "&" + sys.argv[4] if len(sys.argv) > 4 else ""
    before = rss_bytes(pid)
    sockets = [open_idle(port, f"u{index}", query) for index in range(count)]
    time.sleep(1)  # let the server finish the turn that greeted the last one
    after = rss_bytes(pid)
    print(
        f"connections={count} rss_before={before} rss_after={after} "
        f"bytes_per_connection={(after - before) / count:.0f}"
    )
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
