"""Waking a PostgreSQL store's subscribers after commits, off the writers' path."""

from __future__ import annotations

import logging
import threading
import time

import psycopg

__all__ = ["CommitNotifier"]

logger = logging.getLogger("tidings.store")

# How long the notifier waits for a server that does not answer before it tries again later.
_CONNECT_TIMEOUT = 5
# After a failed NOTIFY, the pause before the next: a server that is down is not hammered.
_RETRY_PAUSE = 0.5
# The least time from one NOTIFY to the next. Each is a transaction, and so a WAL flush,
# under the cluster's notification lock: sent back to back, they took a third of the
# commits of 8 writers. Waiting this long adds at most as much to a wake-up.
MIN_INTERVAL = 0.002


class CommitNotifier:
    """Sends the `NOTIFY` that wakes subscribers once appended events are committed.

    A `NOTIFY` inside the appending transaction makes PostgreSQL take its
    cluster-wide notification lock at `COMMIT` and hold it through the WAL
    flush, so every appending transaction of the cluster would commit after
    the one before. Sent after the commit by the writer, it would still cost
    the writer a round trip and a WAL flush of its own (a `NOTIFY` is a
    transaction), and writers would queue behind the one in flight. So a
    writer only records the newest position it committed and goes on; a
    thread of the store's sends one `NOTIFY` carrying the newest position,
    on a connection of its own, and then another if more commits ended
    meanwhile, at least `MIN_INTERVAL` after the one before: one `NOTIFY` in
    flight per store at most, whatever its number of writers, blocking or
    async.

    A commit whose announcement is lost (the process dies first, the
    server is unreachable) is still found by the subscriptions' poll.
    `close` sends what is pending, then stops the thread.
    """

    def __init__(self, conninfo: str, statement: str) -> None:
        self._conninfo = conninfo
        self._statement = statement
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._newest = 0
        self._pending = False
        self._closed = False
        self._closing = threading.Event()  # ends a pause after a failure at once
        self._thread: threading.Thread | None = None

    def notify(self, position: int) -> None:
        """Announce, soon, that events up to `position` are committed; never waits."""
        with self._lock:
            if self._closed:
                return
            self._newest = max(self._newest, position)
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tidings-commit-notifier", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def close(self, timeout: float = _CONNECT_TIMEOUT) -> None:
        """Send the pending announcement, if any, and stop the thread (within `timeout`)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._closing.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        connection: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            while True:
                self._wake.wait()
                with self._lock:
                    self._wake.clear()
                    pending, newest, closing = self._pending, self._newest, self._closed
                    self._pending = False
                if pending:
                    sent = time.monotonic()
                    connection = self._send(connection, newest)
                    # Commits that end meanwhile wait for the next NOTIFY, in one.
                    self._closing.wait(sent + MIN_INTERVAL - time.monotonic())
                if closing:
                    return
        finally:
            if connection is not None:
                connection.close()

    def _send(
        self, connection: psycopg.Connection[tuple[object, ...]] | None, position: int
    ) -> psycopg.Connection[tuple[object, ...]] | None:
        """`NOTIFY` with `position` on `connection` (opened if need be); the connection to keep."""
        try:
            if connection is None or connection.closed:
                connection = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
                )
            connection.execute(self._statement, (str(position),))
            return connection
        except psycopg.Error as exc:
            # The commits stand; subscribers find them at their next poll.
            logger.debug("announcing commits up to %s failed: %s", position, exc)
            if connection is not None:
                connection.close()
            self._closing.wait(_RETRY_PAUSE)
            return None
