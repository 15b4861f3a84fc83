# Generated from src/tidings/projections/_async/locks.py by tools/unasync.py: edit that file, then run `make unasync`.
"""A PostgreSQL session advisory lock per projection: the runner that holds it runs it.

The lock lives on a connection of its own. When the holder dies, PostgreSQL
ends its session and frees the lock at once, so another runner takes the
projection over without waiting for a lease to run out.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

__all__ = ["AdvisoryLock"]


class AdvisoryLock:
    """`pg_try_advisory_lock` on a projection's name, within one schema."""

    def __init__(self, conninfo: str, schema: str, name: str) -> None:
        self._conninfo = conninfo
        self._keys = (_key(f"tidings projections {schema}"), _key(name))
        self._connection: Any = None

    def acquire(self) -> bool:
        """Take the lock if it is free; False when another session holds it."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.Connection.connect(
                    self._conninfo, autocommit=True
                )
            cursor = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", self._keys
            )
            row = cursor.fetchone()
        except psycopg.OperationalError:
            self.release()
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        """Whether the session holding the lock is still there."""
        if self._connection is None or self._connection.closed:
            return False
        try:
            self._connection.execute("SELECT 1")
        except psycopg.OperationalError:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Free the lock by ending its session."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _key(text: str) -> int:
    """A signed 32-bit key, as the two-key form of the advisory lock functions takes."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=4).digest(), "big", signed=True
    )
