# Generated from src/tidings/store/_async/postgres_announcer.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Waking a PostgreSQL store's subscribers after commits, without serialising the writers."""

from __future__ import annotations

import logging
from typing import Any

import threading
import psycopg
from psycopg import Connection

from tidings.store.postgres_sql import Statements

__all__ = ["CommitAnnouncer"]

logger = logging.getLogger("tidings.store")


class CommitAnnouncer:
    """Sends the `NOTIFY` that wakes subscribers once appended events are committed.

    A `NOTIFY` inside the appending transaction makes PostgreSQL take its
    cluster-wide notification lock at `COMMIT` and hold it through the WAL
    flush, so every appending transaction of the cluster would commit after
    the one before. Announced after the commit instead, on the committed
    connection, commits run side by side. One caller at a time sends: callers
    whose commit ended before a `NOTIFY` began are covered by it and return
    without sending one of their own, so under load a process sends about one
    `NOTIFY` per round trip, whatever its number of writers.

    The payload is the newest position this store committed. A commit whose
    announcement is lost (the connection goes right after `COMMIT`, the
    process dies) is still found by the subscriptions' poll.
    """

    def __init__(self, statements: Statements) -> None:
        self._sql = statements
        self._lock = threading.Lock()
        self._commits = 0  # commits ended so far: each announcement takes the next number
        self._covered = 0  # commits that ended before the last NOTIFY was sent
        self._newest = 0

    def announce(self, connection: Connection[Any], position: int) -> None:
        """Wake subscribers for a commit that ended with `position`, on its idle `connection`."""
        self._commits += 1
        mine = self._commits
        self._newest = max(self._newest, position)
        with self._lock:
            if self._covered >= mine:
                return  # a NOTIFY sent after our commit ended wakes them for us
            covering = self._commits
            try:
                connection.execute(self._sql.notify, (str(self._newest),))
            except psycopg.Error as exc:
                # The commit stands; subscribers find it at their next poll.
                logger.debug("announcing commit %s failed: %s", position, exc)
                return
            self._covered = max(self._covered, covering)
