"""Dead letters in the event store's database: SQLite file or PostgreSQL schema."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from tidings.codec import Codec
from tidings.dead_letters.letter import (
    LETTER_COLUMNS,
    DeadLetter,
    letter_from_row,
    letter_values,
)
from tidings.sidetables import dialect_of
from tidings.sidetables._async.statements import execute

__all__ = ["AsyncSQLDeadLetters"]

_CREATE = """
CREATE TABLE IF NOT EXISTS {letters} (
    id TEXT PRIMARY KEY,
    handler TEXT NOT NULL,
    error TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data {blob} NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    occurred_at TEXT NOT NULL,
    headers {blob} NOT NULL,
    stream TEXT,
    version {bigint},
    position {bigint}
)"""
_SELECT = f"SELECT id, {LETTER_COLUMNS} FROM {{letters}}"
_ORDER = " ORDER BY failed_at, id"


class AsyncSQLDeadLetters:
    """Dead letters in a table beside the log (`tidings_dead_letters`, `<schema>.dead_letters`).

    They survive restarts and every process sees the same ones, so a letter
    recorded by one worker can be retried from the command line. The events
    are stored as the log stores them, under their type names; `codec`
    decodes them (a class not loaded here shows as `UndecodedEvent`).
    """

    def __init__(self, store: Any, *, codec: Codec | None = None) -> None:
        self.store = store
        self.codec = codec if codec is not None else Codec()
        self._dialect = dialect_of(store)
        self._ready = False

    async def add(self, letter: DeadLetter) -> None:
        values = letter_values(letter, self.codec)
        marks = ", ".join("?" for _ in values)
        statement = self._sql(f"INSERT INTO {{letters}} (id, {LETTER_COLUMNS}) VALUES ({marks})")
        async with self._transaction() as tx:
            await execute(tx, statement, values)

    async def list(
        self, *, handler: str | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        text = _SELECT + (" WHERE handler = ?" if handler is not None else "") + _ORDER
        params: builtins.list[Any] = [] if handler is None else [handler]
        if limit is not None:
            text += " LIMIT ?"
            params.append(limit)
        rows = await self._query(self._sql(text), params)
        return [letter_from_row(row, self.codec) for row in rows]

    async def get(self, letter_id: UUID) -> DeadLetter:
        rows = await self._query(self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)])
        if not rows:
            raise KeyError(f"no dead letter {letter_id}")
        return letter_from_row(rows[0], self.codec)

    async def remove(self, letter_id: UUID) -> DeadLetter:
        async with self._transaction() as tx:
            rows = await execute(tx, self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)])
            if not rows:
                raise KeyError(f"no dead letter {letter_id}")
            await execute(tx, self._sql("DELETE FROM {letters} WHERE id = ?"), [str(letter_id)])
        return letter_from_row(rows[0], self.codec)

    async def count(self) -> int:
        rows = await self._query(self._sql("SELECT count(*) FROM {letters}"), [])
        return int(rows[0][0])

    async def _query(self, text: str, params: builtins.list[Any]) -> builtins.list[tuple[Any, ...]]:
        async with self._transaction() as tx:
            return await execute(tx, text, params)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A store transaction, the table created first if this object has not seen it yet."""
        async with self.store.transaction() as tx:
            if not self._ready:
                lock = self._dialect.creation_lock
                if lock is not None:
                    await execute(tx, lock, ["tidings dead letters"])
                await execute(tx, self._sql(_CREATE))
                # An index takes no schema name: it lives in its table's schema.
                index = "dead_letters_failed" if self._dialect.postgres else "tidings_dl_failed"
                await execute(
                    tx, self._sql(f"CREATE INDEX IF NOT EXISTS {index} ON {{letters}} (failed_at)")
                )
            yield tx
        self._ready = True

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template, letters="dead_letters")
