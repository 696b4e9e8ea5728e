"""The child side of tests/test_listeners.py: a process that unpickles a listening placeholder,
listens on what it got, and answers each connection with its pid (spawned: importable here)."""

from __future__ import annotations

import os
import socket
from multiprocessing.synchronize import Event


def answer_with_pid(sock: socket.socket, ready: Event, stop: Event) -> None:
    sock.listen(128)
    sock.settimeout(0.1)
    ready.set()
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            conn.sendall(str(os.getpid()).encode())
