#!/usr/bin/env python3
"""Smoke check of a heartbeat server (a peer or rollcall), standard library only.

Opens two WebSocket connections to 127.0.0.1:PORT: one answers every ping with a pong, the
other reads but never sends a byte. Passes when, 3.5 intervals later, the first is still open
and has answered at least one ping, and the second was dropped 0.9 to 3.5 intervals after it
connected (the ws README's heartbeat drops a client that never answers at the second tick
after it connected, so after one to two intervals). `--no-drop` skips the second test, for a
server whose timeout is not about two intervals (rollcall as density.sh starts it).

Usage: python3 benches/peers/check.py PORT INTERVAL_SECONDS [--no-drop]
"""
import base64
import os
import selectors
import socket
import struct
import sys
import time


class Client:
    def __init__(self, port, answer):
        self.answer = answer
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /?user=check{int(answer)}&channel=check HTTP/1.1\r\nHost: check\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit(f"closed during the handshake: {head!r}")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"upgrade refused: {head.decode(errors='replace')}")
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.closed = None
        self.pings = 0

    def age(self):
        """Seconds from the upgrade to the close (or to now, while open)."""
        return (self.closed or time.monotonic()) - self.opened

    def on_readable(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BlockingIOError) as error:
            if isinstance(error, BlockingIOError):
                return
            chunk = b""
        if not chunk:
            self.closed = time.monotonic()
            return
        self.buffer += chunk
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x9:
                self.pings += 1
                if self.answer:
                    self.send(0xA, payload)

    def next_frame(self):
        """Takes one whole unmasked server frame off the buffer, or None."""
        if len(self.buffer) < 2:
            return None
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            (length,) = struct.unpack("!H", self.buffer[2:4])
            start = 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            (length,) = struct.unpack("!Q", self.buffer[2:10])
            start = 10
        if len(self.buffer) < start + length:
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    def send(self, opcode, payload):
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.setblocking(True)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)
        self.sock.setblocking(False)


def main():
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    if len(args) != 2:
        raise SystemExit(__doc__)
    port, interval = int(args[0]), float(args[1])
    expect_drop = "--no-drop" not in sys.argv
    clients = [Client(port, answer=True), Client(port, answer=False)]
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    wait = 3.5 * interval
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(timeout=left):
            key.data.on_readable()
            if key.data.closed is not None:
                selector.unregister(key.fileobj)
    alive, silent = clients
    problems = []
    if alive.closed is not None:
        problems.append(f"the answering client was dropped after {alive.age():.1f}s")
    if alive.pings < 1:
        problems.append("the answering client got no ping")
    if expect_drop:
        if silent.closed is None:
            problems.append(f"the silent client was still open after {wait:.1f}s")
        elif not 0.9 * interval <= silent.age() <= 3.5 * interval:
            problems.append(f"the silent client was dropped after {silent.age():.1f}s")
    dropped = "open" if silent.closed is None else f"dropped after {silent.age():.1f}s"
    print(f"answering client: {alive.pings} pings; silent client: {silent.pings} pings, {dropped}")
    if problems:
        raise SystemExit("check failed: " + "; ".join(problems))
    print("check passed")


if __name__ == "__main__":
    main()
