"""Dead letters in the event store's database: SQLite file or PostgreSQL schema."""

from __future__ import annotations

import builtins
from typing import Any
from uuid import UUID

from tidings.codec import Codec
from tidings.dead_letters.letter import (
    LETTER_COLUMNS,
    DeadLetter,
    letter_from_row,
    letter_values,
)
from tidings.errors import DeadLetterNotFound
from tidings.sidetables import dialect_of
from tidings.sidetables._async.made import AsyncSideTable
from tidings.sidetables._async.statements import execute
from tidings.store._async.base import AsyncStoreWriter, AsyncTransactional

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
    position {bigint},
    parked INTEGER NOT NULL DEFAULT 0
)"""
# Tables made before projections kept their letters here lack `parked`: it is added on first use.
_ADD_PARKED = "ALTER TABLE {letters} ADD COLUMN parked INTEGER NOT NULL DEFAULT 0"
_SELECT = f"SELECT id, {LETTER_COLUMNS} FROM {{letters}}"
_ORDER = " ORDER BY failed_at, id"


def _clause(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


class AsyncSQLDeadLetters:
    """Dead letters in a table beside the log (`tidings_dead_letters`, `<schema>.dead_letters`).

    They survive restarts and every process sees the same ones, so a letter
    recorded by one worker can be retried from the command line. The events
    are stored as the log stores them, under their type names; `codec`
    decodes them (a class not loaded here shows as `UndecodedEvent`).

    Given `tx`, a store transaction, a call runs in it and commits or rolls
    back with it (a projection runner records a letter with its checkpoint).
    """

    def __init__(self, store: AsyncTransactional, *, codec: Codec | None = None) -> None:
        self.store = store
        self.codec = codec if codec is not None else Codec()
        self._dialect = dialect_of(store)
        self._table = AsyncSideTable(store, self._create)

    async def add(self, letter: DeadLetter, *, tx: AsyncStoreWriter | None = None) -> None:
        values = letter_values(letter, self.codec)
        marks = ", ".join("?" for _ in values)
        statement = self._sql(f"INSERT INTO {{letters}} (id, {LETTER_COLUMNS}) VALUES ({marks})")
        async with self._table.transaction(tx) as active:
            await execute(active, statement, values)

    async def list(
        self,
        *,
        handler: str | None = None,
        after: UUID | None = None,
        limit: int | None = None,
        tx: AsyncStoreWriter | None = None,
    ) -> list[DeadLetter]:
        """The dead letters (of `handler`, if given), oldest first, at most `limit`.

        `after` is a cursor, the last letter of the previous page: only the
        letters that come after it are returned. A letter no longer there
        (retried or dropped since) is a `KeyError`, rather than a page that
        starts anywhere.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        conditions, params = self._where(handler)
        async with self._table.transaction(tx) as active:
            if after is not None:
                rows = await execute(
                    active, self._sql("SELECT failed_at FROM {letters} WHERE id = ?"), [str(after)]
                )
                if not rows:
                    raise DeadLetterNotFound(after)
                conditions.append("(failed_at > ? OR (failed_at = ? AND id > ?))")
                params += [rows[0][0], rows[0][0], str(after)]
            text = _SELECT + _clause(conditions) + _ORDER
            if limit is not None:
                text += " LIMIT ?"
                params.append(limit)
            rows = await execute(active, self._sql(text), params)
        return [letter_from_row(row, self.codec) for row in rows]

    async def get(self, letter_id: UUID, *, tx: AsyncStoreWriter | None = None) -> DeadLetter:
        rows = await self._query(self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)], tx)
        if not rows:
            raise DeadLetterNotFound(letter_id)
        return letter_from_row(rows[0], self.codec)

    async def remove(self, letter_id: UUID, *, tx: AsyncStoreWriter | None = None) -> DeadLetter:
        async with self._table.transaction(tx) as active:
            rows = await execute(active, self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)])
            if not rows:
                raise DeadLetterNotFound(letter_id)
            delete = self._sql("DELETE FROM {letters} WHERE id = ?")
            await execute(active, delete, [str(letter_id)])
        return letter_from_row(rows[0], self.codec)

    async def count(self, *, handler: str | None = None) -> int:
        """How many dead letters there are (of `handler`, if given)."""
        conditions, params = self._where(handler)
        text = self._sql("SELECT count(*) FROM {letters}" + _clause(conditions))
        rows = await self._query(text, params, None)
        return int(rows[0][0])

    async def count_by_handler(self) -> dict[str, int]:
        """How many dead letters each handler has, by handler name; handlers with none left out."""
        text = self._sql(
            "SELECT handler, count(*) FROM {letters} GROUP BY handler ORDER BY handler"
        )
        return {handler: int(count) for handler, count in await self._query(text, [], None)}

    @staticmethod
    def _where(handler: str | None) -> tuple[builtins.list[str], builtins.list[object]]:
        """The conditions and parameters that keep the letters of `handler` (all if None)."""
        if handler is None:
            return [], []
        return ["handler = ?"], [handler]

    async def _query(
        self, text: str, params: builtins.list[object], tx: AsyncStoreWriter | None
    ) -> builtins.list[tuple[Any, ...]]:
        async with self._table.transaction(tx) as active:
            return await execute(active, text, params)

    async def _create(self, tx: AsyncStoreWriter) -> None:
        lock = self._dialect.creation_lock
        if lock is not None:
            await execute(tx, lock, ["tidings dead letters"])
        await execute(tx, self._sql(_CREATE))
        if self._dialect.postgres:
            columns = await execute(
                tx,
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = 'dead_letters'",
                [self._dialect.schema],
            )
        else:
            columns = await execute(
                tx, self._sql("SELECT name FROM pragma_table_info('{letters}')")
            )
        if ("parked",) not in columns:
            await execute(tx, self._sql(_ADD_PARKED))
        # An index takes no schema name: it lives in its table's schema.
        index = "dead_letters_failed" if self._dialect.postgres else "tidings_dl_failed"
        await execute(
            tx, self._sql(f"CREATE INDEX IF NOT EXISTS {index} ON {{letters}} (failed_at)")
        )

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template, letters="dead_letters")
