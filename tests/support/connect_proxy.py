"""A real, small HTTP CONNECT proxy on 127.0.0.1 (a thread per tunnel) that records each tunnel's target."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Callable


class ConnectProxy:
    """``CONNECT host:port`` -> 200 and bytes relayed both ways; anything else -> 405."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                method, target = head.split(b"\r\n", 1)[0].split()[:2]
                if method != b"CONNECT":
                    client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                host, _, port = target.decode().rpartition(":")
                owner.tunnels.append(target.decode())
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                except OSError:
                    client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                relay(client, upstream)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> ConnectProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def relay(a: socket.socket, b: socket.socket, seen: Callable[[bool], None] | None = None, idle_s: float = 30) -> None:
    """Relay bytes both ways until either side closes (or ``idle_s`` passes); ``seen(from_a)``
    is told of each chunk before it is passed on."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], idle_s)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                if seen is not None:
                    seen(src is a)
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()
