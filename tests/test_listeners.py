"""``runyard serve --workers N``'s sockets (server/listeners.py): the supervisor holds the port
without listening, and each process it starts listens on a socket of its own (SO_REUSEPORT), so
the kernel spreads connections across the processes instead of one shared accept queue."""

from __future__ import annotations

import multiprocessing
import pickle
import socket
from collections import Counter

import pytest

from runyard.server.listeners import placeholder
from support.reuseport import answer_with_pid


def test_the_placeholder_holds_the_port_without_taking_connections() -> None:
    sock = placeholder("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port != 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        plain = socket.socket()
        with pytest.raises(OSError):  # a server without SO_REUSEPORT cannot take the port
            plain.bind(("127.0.0.1", port))
        plain.close()
        worker = pickle.loads(pickle.dumps(sock))  # what a worker process gets: its own socket
        assert worker.fileno() != sock.fileno() and worker.getsockname() == sock.getsockname()
        worker.listen()
        try:
            with pytest.raises(OSError):  # a second supervisor would take half the connections
                placeholder("127.0.0.1", port)
        finally:
            worker.close()
    finally:
        sock.close()


def test_each_process_listens_on_its_own_socket_and_gets_a_share_of_connections() -> None:
    sock = placeholder("127.0.0.1", 0)
    port = sock.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")  # as uvicorn starts its workers: the socket pickled
    stop = spawn.Event()
    readies = [spawn.Event() for _ in range(2)]
    children = [spawn.Process(target=answer_with_pid, args=(sock, ready, stop)) for ready in readies]
    for child in children:
        child.start()
    try:
        for ready in readies:
            assert ready.wait(30)
        pids: Counter[int] = Counter()
        for _ in range(64):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                pids[int(conn.recv(32))] += 1
        assert set(pids) == {child.pid for child in children}
        # one shared accept queue can leave a process with none; 64 connections hashed over two
        # sockets give each fewer than 8 with a probability of about 1e-10
        assert min(pids.values()) >= 8, pids
    finally:
        stop.set()
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
        sock.close()
