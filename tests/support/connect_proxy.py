"""A real, small HTTP CONNECT proxy on 127.0.0.1 (a thread per tunnel) that records each tunnel's
target and Proxy-Authorization."""

from __future__ import annotations

import socket

from support.tcp_relay import RelayServer, relay


class ConnectProxy(RelayServer):
    """``CONNECT host:port`` -> 200 and bytes relayed both ways; anything else -> 405."""

    def __init__(self) -> None:
        super().__init__()
        self.tunnels: list[str] = []
        self.auths: list[str | None] = []  # each CONNECT's Proxy-Authorization, if any
        self.url = f"http://127.0.0.1:{self.port}"

    def handle(self, client: socket.socket) -> None:
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
        auth = [
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"proxy-authorization:")
        ]
        self.auths.append(auth[0] if auth else None)
        self.tunnels.append(target.decode())
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        relay(client, upstream)
