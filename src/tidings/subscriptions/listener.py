"""Where wake-ups come from: a store's in-process commit hook, or PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tidings.subscriptions.signal import CommitSignal

__all__ = ["PostgresListener", "watch_commits"]

logger = logging.getLogger("tidings.subscriptions")


def watch_commits(store: object, signal: CommitSignal) -> Callable[[], None]:
    """Announce the store's commits on `signal`; returns the function that stops watching.

    Memory and SQLite stores call back in process on each commit. A PostgreSQL
    store is watched by a `PostgresListener`. Commits this cannot see (another
    process writing to a SQLite file) are found by the readers' polling.
    """
    add_listener = getattr(store, "add_commit_listener", None)
    if add_listener is not None:
        remove: Callable[[], None] = add_listener(signal.announce)
        return remove
    channel = getattr(store, "notify_channel", None)
    conninfo = getattr(store, "conninfo", None)
    if isinstance(channel, str) and isinstance(conninfo, str):
        listener = PostgresListener(conninfo, channel, signal)
        listener.start()
        return listener.stop
    return lambda: None


class PostgresListener:
    """A thread that LISTENs on a store's channel and announces each NOTIFY on a signal.

    When the connection is lost it reconnects every `retry_interval` seconds;
    meanwhile readers find new events by polling. Each (re)connection is
    announced too, as commits may have gone unheard while it was down.
    """

    def __init__(
        self,
        conninfo: str,
        channel: str,
        signal: CommitSignal,
        *,
        retry_interval: float = 1.0,
        stop_check: float = 0.1,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.signal = signal
        self.retry_interval = retry_interval
        self.connected = threading.Event()
        self._stop_check = stop_check
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"LISTEN {channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(listen)
                    self.connected.set()
                    self.signal.announce()
                    while not self._stopped.is_set():
                        for notify in conn.notifies(timeout=self._stop_check):
                            self.signal.announce(_position(notify.payload))
            except psycopg.Error as exc:
                if self.connected.is_set():
                    logger.warning("lost the LISTEN connection on %s: %s", self.channel, exc)
                self.connected.clear()
                self._stopped.wait(self.retry_interval)
        self.connected.clear()


def _position(payload: str) -> int:
    try:
        return int(payload)
    except ValueError:
        return 0
