# Generated from src/tidings/sidetables/_async/statements.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Running statements on a store transaction's connection, sqlite3 or psycopg alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["execute", "execute_count"]


def execute(tx: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in the transaction `tx`; the rows it returns, if any."""
    cursor = tx.connection.execute(text, list(params))
    if cursor.description is None:
        return []
    rows = cursor.fetchall()
    return [tuple(row) for row in rows]


def execute_count(tx: Any, text: str, params: Sequence[Any] = ()) -> int:
    """Run one statement in the transaction `tx`; how many rows it changed."""
    cursor = tx.connection.execute(text, list(params))
    return int(cursor.rowcount)
