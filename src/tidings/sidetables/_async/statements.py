"""Running statements on a store transaction's connection, sqlite3 or psycopg alike."""

from __future__ import annotations

import inspect  # sync:
from collections.abc import Sequence
from typing import Any

from tidings.store._async.base import AsyncStoreWriter

__all__ = ["connection_of", "execute", "execute_count"]


def connection_of(tx: AsyncStoreWriter) -> Any:
    """The driver's connection (sqlite3 or psycopg) that a SQL store's transaction writes on.

    Its type is the driver's, which the store protocols leave open: a memory
    store's transaction has none, and side tables are only made beside SQL stores.
    """
    connection = getattr(tx, "connection", None)
    if connection is None:
        raise TypeError(f"{type(tx).__name__} has no connection: use a SQLite or PostgreSQL store")
    return connection


async def execute(
    tx: AsyncStoreWriter, text: str, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    """Run one statement in the transaction `tx`; the rows it returns, if any."""
    cursor = connection_of(tx).execute(text, list(params))
    if inspect.isawaitable(cursor):  # sync:
        cursor = await cursor  # sync:
    if cursor.description is None:
        return []
    rows = cursor.fetchall()
    if inspect.isawaitable(rows):  # sync:
        rows = await rows  # sync:
    return [tuple(row) for row in rows]


async def execute_count(tx: AsyncStoreWriter, text: str, params: Sequence[object] = ()) -> int:
    """Run one statement in the transaction `tx`; how many rows it changed."""
    cursor = connection_of(tx).execute(text, list(params))
    if inspect.isawaitable(cursor):  # sync:
        cursor = await cursor  # sync:
    return int(cursor.rowcount)
