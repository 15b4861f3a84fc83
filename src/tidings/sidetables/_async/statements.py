"""Running statements on a store transaction's connection, sqlite3 or psycopg alike."""

from __future__ import annotations

import inspect  # sync:
from collections.abc import Sequence
from typing import Any

__all__ = ["execute", "execute_count"]


async def execute(tx: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in the transaction `tx`; the rows it returns, if any."""
    cursor = tx.connection.execute(text, list(params))
    if inspect.isawaitable(cursor):  # sync:
        cursor = await cursor  # sync:
    if cursor.description is None:
        return []
    rows = cursor.fetchall()
    if inspect.isawaitable(rows):  # sync:
        rows = await rows  # sync:
    return [tuple(row) for row in rows]


async def execute_count(tx: Any, text: str, params: Sequence[Any] = ()) -> int:
    """Run one statement in the transaction `tx`; how many rows it changed."""
    cursor = tx.connection.execute(text, list(params))
    if inspect.isawaitable(cursor):  # sync:
        cursor = await cursor  # sync:
    return int(cursor.rowcount)
