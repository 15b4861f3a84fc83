"""A TCP relay to PostgreSQL whose connections a test cuts, as a failing network would.

`pg_terminate_backend` ends a server process; this ends the path to it
instead, so a statement in flight when it happens may have run, or not, and
its client cannot tell. `cut()` closes every relayed connection on both
sides: the server sees its client gone, finishes what it was doing (a COMMIT
under way commits) and ends the session. `partition()` closes only the
client's side: the server keeps the session, idle in any transaction it was
in, until `heal()` closes that side too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Relay", "relayed"]


class Relay:
    """Listens on 127.0.0.1 and relays each connection to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._kept: list[socket.socket] = []  # server sides of partitioned connections
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> int:
        """Close every connection on both sides; how many were open."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _close(client)
            _close(server)
        return len(pairs)

    def partition(self) -> int:
        """Close the client's side of every connection; the server's stays open until `heal`."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._kept.extend(server for _, server in pairs)
        for client, _ in pairs:
            _close(client)
        return len(pairs)

    def heal(self) -> None:
        """Close the server sides that `partition` kept open: the server ends those sessions."""
        with self._lock:
            kept, self._kept = self._kept, []
        for server in kept:
            _close(server)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.cut()
        self.heal()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=_pump, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    # One side ended: end the other, unless a partition keeps the server side open.
    if source.fileno() != -1 and target.fileno() != -1:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def relayed(dsn: str) -> Iterator[tuple[Relay, str]]:
    """A relay to the server of the URL `dsn`, and the URL that connects through it."""
    parts = urlsplit(dsn)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield relay, urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{relay.port}"))
    finally:
        relay.close()
