"""The one row a PostgreSQL query answers, for tests that read a count or an id by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["one"]


def one(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The row of a query that answers one, such as `SELECT count(*)`; its columns are any value."""
    row = cursor.fetchone()
    assert row is not None, "the query answered no row"
    return row
