"""Hearing commits that other processes make to a SQLite file: `PRAGMA data_version`, polled.

SQLite has no notification between processes. What it has is cheap: a
connection's `PRAGMA data_version` changes whenever another connection (of
this process or any other) has committed to the file since it last looked.
A thread asking that every `interval` seconds (a few microseconds each, no
lock taken) hears another process's commit within that interval, where
readers polling the log would take their poll interval (a second, say).

One watch serves a store object: it runs while the store has commit
listeners and stops with the last of them. Commits it hears are announced
with position 0 (unknown): listeners then read the log to see what came.
The store's own commits are heard twice, once from the store and once here;
a second wake-up finds nothing new and costs one read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

__all__ = ["DataVersionWatch"]


class DataVersionWatch:
    """A thread that calls `changed()` when a commit to the file at `path` is seen.

    The baseline is read by `start`, before it returns: a commit made after
    `start` returned is always heard.
    """

    def __init__(self, path: str, interval: float, changed: Callable[[], None]) -> None:
        self.path = path
        self.interval = interval
        self._changed = changed
        self._stopped = threading.Event()
        self._connection: sqlite3.Connection | None = None
        self._version = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read the baseline and start watching; a file that cannot be opened is not watched.

        The readers then find commits by polling, as without a watch.
        """
        try:
            connection = sqlite3.connect(
                self.path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
            self._version = _data_version(connection)
        except sqlite3.Error:
            return
        self._connection = connection
        self._thread = threading.Thread(
            target=self._run, name=f"data_version {self.path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; the thread closes its connection within `interval` and ends.

        It returns at once, so an event loop stopping a watch is not held up.
        """
        self._stopped.set()

    def _run(self) -> None:
        connection = self._connection
        assert connection is not None
        try:
            while not self._stopped.wait(self.interval):
                try:
                    version = _data_version(connection)
                except sqlite3.Error:
                    continue  # a moment's trouble reading the file: look again next time
                if version != self._version:
                    self._version = version
                    self._changed()
        finally:
            connection.close()


def _data_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA data_version").fetchone()
    return int(version)
