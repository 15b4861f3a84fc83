# Generated from src/tidings/dead_letters/_async/sql.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Dead letters in the event store's database: SQLite file or PostgreSQL schema."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
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
from tidings.sidetables._sync.statements import execute

__all__ = ["SQLDeadLetters"]

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


class SQLDeadLetters:
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

    def add(self, letter: DeadLetter) -> None:
        values = letter_values(letter, self.codec)
        marks = ", ".join("?" for _ in values)
        statement = self._sql(f"INSERT INTO {{letters}} (id, {LETTER_COLUMNS}) VALUES ({marks})")
        with self._transaction() as tx:
            execute(tx, statement, values)

    def list(
        self, *, handler: str | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        text = _SELECT + (" WHERE handler = ?" if handler is not None else "") + _ORDER
        params: builtins.list[Any] = [] if handler is None else [handler]
        if limit is not None:
            text += " LIMIT ?"
            params.append(limit)
        rows = self._query(self._sql(text), params)
        return [letter_from_row(row, self.codec) for row in rows]

    def get(self, letter_id: UUID) -> DeadLetter:
        rows = self._query(self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)])
        if not rows:
            raise KeyError(f"no dead letter {letter_id}")
        return letter_from_row(rows[0], self.codec)

    def remove(self, letter_id: UUID) -> DeadLetter:
        with self._transaction() as tx:
            rows = execute(tx, self._sql(_SELECT + " WHERE id = ?"), [str(letter_id)])
            if not rows:
                raise KeyError(f"no dead letter {letter_id}")
            execute(tx, self._sql("DELETE FROM {letters} WHERE id = ?"), [str(letter_id)])
        return letter_from_row(rows[0], self.codec)

    def count(self) -> int:
        rows = self._query(self._sql("SELECT count(*) FROM {letters}"), [])
        return int(rows[0][0])

    def _query(self, text: str, params: builtins.list[Any]) -> builtins.list[tuple[Any, ...]]:
        with self._transaction() as tx:
            return execute(tx, text, params)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A store transaction, the table created first if this object has not seen it yet."""
        with self.store.transaction() as tx:
            if not self._ready:
                lock = self._dialect.creation_lock
                if lock is not None:
                    execute(tx, lock, ["tidings dead letters"])
                execute(tx, self._sql(_CREATE))
                # An index takes no schema name: it lives in its table's schema.
                index = "dead_letters_failed" if self._dialect.postgres else "tidings_dl_failed"
                execute(
                    tx, self._sql(f"CREATE INDEX IF NOT EXISTS {index} ON {{letters}} (failed_at)")
                )
            yield tx
        self._ready = True

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template, letters="dead_letters")
