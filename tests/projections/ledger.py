"""A ledger projection for the tests: entries and balances, in the store's own database.

Each entry's event id is a primary key, so handling an event twice fails: the
read model itself checks exactly-once processing. `backend` fixtures give a
store opener and a reader of the read model for memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings import Codec, Envelope, Event
from tidings.projections import Projection, handles
from tidings.store import NewEvent


@dataclass(frozen=True)
class Deposited(Event, type_name="tests.Deposited"):
    account: str
    amount: int


@dataclass(frozen=True)
class Noted(Event, type_name="tests.Noted"):
    text: str


CODEC = Codec(Deposited, Noted)


def deposit(account: str, amount: int = 1) -> NewEvent:
    return CODEC.new_event(Envelope.new(Deposited(account, amount)))


def note(text: str = "hello") -> NewEvent:
    return CODEC.new_event(Envelope.new(Noted(text)))


def _run(tx: object, *statements: tuple[str, tuple[object, ...]]) -> Awaitable[None] | None:
    """Run statements on the transaction's connection: sqlite3, psycopg, or psycopg async.

    Which driver it is shows at run time, so the ledger takes either kind of transaction
    (it is a `Projection[object]`), and the blocking and the async runner both take it.
    """
    connection: Any = getattr(tx, "connection", None)
    if isinstance(connection, sqlite3.Connection):
        for text, params in statements:
            connection.execute(text, params)
        return None
    converted = [(text.replace("?", "%s"), params) for text, params in statements]
    if hasattr(connection, "__aenter__"):

        async def run_all() -> None:
            for text, params in converted:
                await connection.execute(text, params)

        return run_all()
    for text, params in converted:
        connection.execute(text, params)
    return None


class Ledger(Projection[object]):
    """Entries and balances in SQL tables named after `prefix`."""

    name = "ledger"

    def __init__(self, prefix: str = "ledger", name: str = "ledger") -> None:
        self.name = name
        self.entries = f"{prefix}_entries"
        self.balances = f"{prefix}_balances"

    def setup(self, tx: object) -> Awaitable[None] | None:
        return _run(
            tx,
            (
                f"CREATE TABLE IF NOT EXISTS {self.entries} (event_id TEXT PRIMARY KEY,"
                " account TEXT NOT NULL, amount BIGINT NOT NULL, position BIGINT NOT NULL)",
                (),
            ),
            (
                f"CREATE TABLE IF NOT EXISTS {self.balances} (account TEXT PRIMARY KEY,"
                " balance BIGINT NOT NULL, entries BIGINT NOT NULL)",
                (),
            ),
        )

    def reset(self, tx: object) -> Awaitable[None] | None:
        return _run(tx, (f"DELETE FROM {self.entries}", ()), (f"DELETE FROM {self.balances}", ()))

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        return _run(
            tx,
            (
                f"INSERT INTO {self.entries} (event_id, account, amount, position)"
                " VALUES (?, ?, ?, ?)",
                (str(envelope.message_id), event.account, event.amount, envelope.position),
            ),
            (
                f"INSERT INTO {self.balances} (account, balance, entries) VALUES (?, ?, 1)"
                " ON CONFLICT (account) DO UPDATE SET"
                f" balance = {self.balances}.balance + excluded.balance,"
                f" entries = {self.balances}.entries + 1",
                (event.account, event.amount),
            ),
        )


class MemoryLedger(Projection[object]):
    """The ledger in process memory, idempotent by event id (at least once)."""

    name = "ledger"
    transactional = False

    def __init__(self, prefix: str = "ledger", name: str = "ledger") -> None:
        self.name = name
        self.seen: dict[uuid.UUID, tuple[str, int]] = {}

    def reset(self, tx: object) -> None:
        self.seen.clear()

    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: object) -> None:
        self.seen[envelope.message_id] = (event.account, event.amount)

    def model(self) -> dict[str, tuple[int, int]]:
        balances: dict[str, tuple[int, int]] = {}
        for account, amount in self.seen.values():
            balance, entries = balances.get(account, (0, 0))
            balances[account] = (balance + amount, entries + 1)
        return balances


@dataclass
class Backend:
    """A store to open and the ledger to read, on one backend."""

    name: str
    open: Callable[[bool], Any]
    ledger: Callable[..., Projection[object]]
    read: Callable[[Projection[object]], dict[str, tuple[int, int]]]
    url: str
    qualify: Callable[[str], str] = lambda table: table
    """The name of a read model table in this backend's database (schema-qualified)."""


@contextmanager
def backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    if name == "memory":
        from tidings.store import AsyncMemoryStore, MemoryStore

        yield Backend(
            name,
            lambda asynchronous: AsyncMemoryStore() if asynchronous else MemoryStore(),
            MemoryLedger,
            lambda ledger: ledger.model(),  # type: ignore[attr-defined]
            "memory:",
        )
    elif name == "sqlite":
        from tidings.store import AsyncSQLiteStore, SQLiteStore

        path = tmp_path / "events.db"

        def read_sqlite(ledger: Projection[object]) -> dict[str, tuple[int, int]]:
            with sqlite3.connect(path) as connection:
                return _balances(connection.execute, ledger)

        yield Backend(
            name,
            lambda asynchronous: AsyncSQLiteStore(path) if asynchronous else SQLiteStore(path),
            Ledger,
            read_sqlite,
            f"sqlite:///{path}",
        )
    else:
        import psycopg
        from psycopg import sql

        from tests.services import postgres_dsn
        from tidings.store.postgres import AsyncPostgresStore, PostgresStore

        dsn = postgres_dsn()
        schema = f"projections_{uuid.uuid4().hex[:12]}"

        def open_postgres(asynchronous: bool) -> Any:
            kind = AsyncPostgresStore if asynchronous else PostgresStore
            return kind(dsn, schema=schema)

        def read_postgres(ledger: Projection[object]) -> dict[str, tuple[int, int]]:
            with psycopg.connect(dsn, autocommit=True) as connection:
                return _balances(connection.execute, ledger)

        try:
            yield Backend(
                name,
                open_postgres,
                lambda prefix="ledger", name="ledger": Ledger(f"{schema}.{prefix}", name),
                read_postgres,
                f"{dsn}?schema={schema}",
                lambda table: f"{schema}.{table}",
            )
        finally:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def _balances(
    execute: Callable[..., Any], ledger: Projection[object]
) -> dict[str, tuple[int, int]]:
    assert isinstance(ledger, Ledger)
    rows = execute(f"SELECT account, balance, entries FROM {ledger.balances}").fetchall()
    entries = execute(f"SELECT count(*) FROM {ledger.entries}").fetchone()[0]
    balances = {account: (int(balance), int(count)) for account, balance, count in rows}
    assert sum(count for _, count in balances.values()) == entries
    return balances


LEDGERS = [Ledger()]
"""The projections of a SQLite application, as the CLI finds them (`module:attribute`)."""
