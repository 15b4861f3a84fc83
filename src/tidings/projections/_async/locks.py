"""A PostgreSQL session advisory lock per projection: the runner that holds it runs it.

The lock lives on a connection of its own. When the holder dies, PostgreSQL
ends its session and frees the lock at once, so another runner takes the
projection over without waiting for a lease to run out.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg.rows import TupleRow

__all__ = ["AsyncAdvisoryLock"]


class AsyncAdvisoryLock:
    """`pg_try_advisory_lock` on a projection's name, within one schema."""

    def __init__(self, conninfo: str, schema: str, name: str) -> None:
        self._conninfo = conninfo
        self._keys = (_key(f"tidings projections {schema}"), _key(name))
        self._connection: psycopg.AsyncConnection[TupleRow] | None = None

    async def acquire(self) -> bool:
        """Take the lock if it is free; False when another session holds it."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
            cursor = await self._connection.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", self._keys
            )
            row = await cursor.fetchone()
        except psycopg.OperationalError:
            await self.release()
            return False
        return bool(row and row[0])

    async def held(self) -> bool:
        """Whether the session holding the lock is still there."""
        if self._connection is None or self._connection.closed:
            return False
        try:
            await self._connection.execute("SELECT 1")
        except psycopg.OperationalError:
            await self.release()
            return False
        return True

    async def release(self) -> None:
        """Free the lock by ending its session."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def _key(text: str) -> int:
    """A signed 32-bit key, as the two-key form of the advisory lock functions takes."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=4).digest(), "big", signed=True
    )
