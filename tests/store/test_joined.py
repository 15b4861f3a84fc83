"""Writing events through a connection whose transaction the application owns.

`store.joined(connection)` appends and reads inside a transaction that
someone else (an ORM session, say) opened and will commit or roll back. Each
case runs on SQLite and PostgreSQL, through the blocking and the async store.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.services import postgres_dsn
from tests.store.backends import Blocking
from tests.store.readable import wait_readable
from tests.store.test_contract import ids, ids_of, new_events, versions
from tidings.errors import EventIdConflict, WrongExpectedVersion
from tidings.store import (
    AsyncSQLiteStore,
    EventStore,
    SQLiteStore,
    StoreWriter,
    StreamState,
)

NO_STREAM = StreamState.NO_STREAM


class Owner:
    """An application's connection and the transaction it holds open on it."""

    def __init__(self, connection: Any, writer: StoreWriter, call: Callable[..., Any]) -> None:
        self.connection = connection
        self.writer = writer
        self._call = call

    def execute(self, statement: str) -> None:
        self._call(self.connection.execute, statement)

    def commit(self) -> None:
        self._call(self.connection.commit)

    def rollback(self) -> None:
        self._call(self.connection.rollback)


def _blocking(target: Any, portal: BlockingPortal | None) -> Any:
    return target if portal is None else Blocking(target, portal)


class Harness:
    """A store on a fresh database, and owners of transactions on connections of their own."""

    def __init__(
        self,
        store: Any,
        connect: Callable[[], Any],
        portal: BlockingPortal | None,
        app_table: str,
    ) -> None:
        self._store = store
        self.store: EventStore = _blocking(store, portal)
        self._connect = connect
        self._portal = portal
        self.app_table = app_table
        self._connections: list[Any] = []

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._portal is not None and inspect.iscoroutinefunction(fn):
            return self._portal.call(functools.partial(fn, *args))
        return fn(*args)

    def connect(self) -> Any:
        connection = self._call(self._connect)
        self._connections.append(connection)
        return connection

    def owner(self, connection: Any = None) -> Owner:
        connection = connection if connection is not None else self.connect()
        return Owner(connection, self.joined(connection), self._call)

    def joined(self, connection: Any) -> StoreWriter:
        # The store's own writer, or a `Blocking` proxy that answers as the blocking one does.
        writer: StoreWriter = _blocking(self._store.joined(connection), self._portal)
        return writer

    def app_rows(self) -> list[str]:
        """The names in the application's table, as committed."""
        connection = self.connect()
        cursor = self._call(connection.execute, f"SELECT name FROM {self.app_table}")
        names = [row[0] for row in self._call(cursor.fetchall)]
        self._call(connection.rollback)
        return names

    def close(self) -> None:
        for connection in self._connections:
            self._call(connection.close)
        self.store.close()


@contextmanager
def sqlite_harness(tmp_path: Path, asynchronous: bool) -> Iterator[Harness]:
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode = WAL")
        setup.execute("CREATE TABLE app (name TEXT PRIMARY KEY)")
    setup.close()

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=10, check_same_thread=False)

    if asynchronous:
        with start_blocking_portal() as portal:
            harness = Harness(portal.call(AsyncSQLiteStore, path), connect, portal, "app")
            try:
                yield harness
            finally:
                harness.close()
    else:
        harness = Harness(SQLiteStore(path), connect, None, "app")
        try:
            yield harness
        finally:
            harness.close()


@contextmanager
def postgres_harness(tmp_path: Path, asynchronous: bool) -> Iterator[Harness]:
    dsn = postgres_dsn()
    import psycopg
    from psycopg import sql

    from tidings.store.postgres import AsyncPostgresStore, PostgresStore

    schema = f"joined_{uuid.uuid4().hex[:12]}"
    app_table = f"{schema}.app"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        setup.execute(f"CREATE TABLE {app_table} (name text PRIMARY KEY)")
    try:
        if asynchronous:
            with start_blocking_portal() as portal:

                async def connect_async() -> Any:
                    return await psycopg.AsyncConnection.connect(dsn)

                store = portal.call(functools.partial(AsyncPostgresStore, dsn, schema=schema))
                harness = Harness(store, connect_async, portal, app_table)
                try:
                    yield harness
                finally:
                    harness.close()
        else:
            harness = Harness(
                PostgresStore(dsn, schema=schema), lambda: psycopg.connect(dsn), None, app_table
            )
            try:
                yield harness
            finally:
                harness.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


HARNESSES: dict[str, Callable[[Path, bool], AbstractContextManager[Harness]]] = {
    "sqlite": sqlite_harness,
    "postgres": postgres_harness,
}


@pytest.fixture(
    params=[
        pytest.param(
            (name, mode),
            id=f"{name}-{mode}",
            marks=[pytest.mark.postgres] if name == "postgres" else [],
        )
        for name in HARNESSES
        for mode in ("sync", "async")
    ]
)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    name, mode = request.param
    with HARNESSES[name](tmp_path, mode == "async") as opened:
        yield opened


def test_events_appear_when_the_owner_commits(harness: Harness) -> None:
    assert harness.store.read_all() == []  # the store has made its schema
    owner = harness.owner()
    events = new_events(2)

    result = owner.writer.append("Order-1", events, NO_STREAM)

    assert result.version == 2
    assert harness.store.read_all() == []
    owner.commit()
    records = harness.store.read_stream("Order-1")
    assert ids(records) == ids_of(events)
    assert [r.position for r in records] == list(result.positions)


def test_events_vanish_when_the_owner_rolls_back(harness: Harness) -> None:
    harness.store.append("Order-1", new_events(1))
    owner = harness.owner()
    owner.writer.append("Order-1", new_events(2), 1)
    owner.writer.append("Order-2", new_events(1), NO_STREAM)

    owner.rollback()

    assert versions(harness.store.read_stream("Order-1")) == [1]
    assert harness.store.stream_version("Order-2") is None
    assert harness.store.append("Order-1", new_events(1), 1).version == 2


def test_application_rows_and_events_commit_or_roll_back_together(harness: Harness) -> None:
    kept = harness.owner()
    kept.execute(f"INSERT INTO {harness.app_table} (name) VALUES ('kept')")
    kept.writer.append("Order-1", new_events(1), NO_STREAM)
    kept.commit()
    dropped = harness.owner()
    dropped.execute(f"INSERT INTO {harness.app_table} (name) VALUES ('dropped')")
    dropped.writer.append("Order-2", new_events(1), NO_STREAM)
    dropped.rollback()

    wait_readable(harness.store)
    assert [r.stream for r in harness.store.read_all()] == ["Order-1"]
    assert harness.app_rows() == ["kept"]


def test_a_wrong_expected_version_is_a_conflict_and_leaves_the_transaction_usable(
    harness: Harness,
) -> None:
    harness.store.append("Order-1", new_events(2))
    owner = harness.owner()

    with pytest.raises(WrongExpectedVersion) as raised:
        owner.writer.append("Order-1", new_events(1), 1)
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("Order-1", 1, 2)
    with pytest.raises(WrongExpectedVersion):
        owner.writer.append("Order-1", new_events(1), NO_STREAM)
    owner.writer.append("Order-1", new_events(1), 2)
    owner.commit()

    assert versions(harness.store.read_stream("Order-1")) == [1, 2, 3]


def test_a_rival_transaction_conflicts_once_the_first_commits(harness: Harness) -> None:
    first, second = harness.owner(), harness.owner()
    first.writer.append("Order-1", new_events(1), NO_STREAM)
    outcome: list[BaseException | None] = []
    started = threading.Event()

    def rival() -> None:
        started.set()
        try:
            second.writer.append("Order-1", new_events(1), NO_STREAM)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            second.rollback()

    thread = threading.Thread(target=rival, daemon=True)
    thread.start()
    started.wait()
    first.commit()
    thread.join(10)

    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], WrongExpectedVersion)
    assert versions(harness.store.read_stream("Order-1")) == [1]


def test_a_rival_locking_the_stream_waits_then_reads_the_first_commit(harness: Harness) -> None:
    harness.store.append("Order-1", new_events(1))
    first, second = harness.owner(), harness.owner()
    first.writer.lock_stream("Order-1")
    first.writer.append("Order-1", new_events(1), 1)
    seen: list[list[int]] = []
    errors: list[BaseException] = []

    def rival() -> None:
        try:
            second.writer.lock_stream("Order-1")
            seen.append(versions(second.writer.read_stream("Order-1")))
            second.commit()
        except BaseException as exc:
            errors.append(exc)
            second.rollback()

    thread = threading.Thread(target=rival, daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive(), "the rival took a lock the first transaction holds"
    first.commit()
    thread.join(10)

    assert not thread.is_alive()
    assert errors == []
    assert seen == [[1, 2]]


def test_reads_see_the_transactions_own_appends(harness: Harness) -> None:
    harness.store.append("Order-1", new_events(2))
    owner = harness.owner()
    owner.writer.append("Order-1", new_events(1), 2)

    assert versions(owner.writer.read_stream("Order-1")) == [1, 2, 3]
    assert versions(owner.writer.read_stream("Order-1", backwards=True, limit=1)) == [3]
    assert versions(harness.store.read_stream("Order-1")) == [1, 2]
    owner.rollback()


def test_writers_sharing_a_transaction_get_distinct_positions(harness: Harness) -> None:
    owner = harness.owner()
    other = harness.joined(owner.connection)

    first = owner.writer.append("Order-1", new_events(2))
    second = other.append("Order-2", new_events(2))
    third = owner.writer.append("Order-1", new_events(1), 2)
    owner.commit()

    positions = [*first.positions, *second.positions, *third.positions]
    assert positions == sorted(positions)
    assert len(set(positions)) == 5
    wait_readable(harness.store)
    assert [r.position for r in harness.store.read_all()] == positions


def test_a_repeated_batch_is_stored_once_and_an_overlap_refused(harness: Harness) -> None:
    batch = new_events(2)
    owner = harness.owner()
    first = owner.writer.append("Order-1", batch)
    assert owner.writer.append("Order-1", batch) == first
    with pytest.raises(EventIdConflict):
        owner.writer.append("Order-1", [batch[1], *new_events(1)])
    owner.commit()

    wait_readable(harness.store)
    assert ids(harness.store.read_all()) == ids_of(batch)


def test_the_schema_is_made_on_a_fresh_database_through_the_joined_connection(
    harness: Harness,
) -> None:
    # No call has gone through the store itself yet: the joined writer makes the schema.
    owner = harness.owner()
    owner.writer.append("Order-1", new_events(1), NO_STREAM)
    owner.commit()

    assert harness.store.stream_version("Order-1") == 1


def test_an_sqlite_connection_to_another_file_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    other = sqlite3.connect(tmp_path / "other.db")
    try:
        with pytest.raises(ValueError, match="not on this store's file"):
            store.joined(other)
    finally:
        other.close()
        store.close()


def test_an_sqlite_connection_in_autocommit_without_a_transaction_is_refused(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    connection = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        with pytest.raises(ValueError, match="autocommit"):
            store.joined(connection).append("Order-1", new_events(1))
        connection.execute("BEGIN")
        store.joined(connection).append("Order-1", new_events(1))
        connection.execute("COMMIT")
        assert store.stream_version("Order-1") == 1
    finally:
        connection.close()
        store.close()


def test_an_sqlite_writer_wakes_the_stores_listeners_once_its_owner_committed(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    heard: list[int] = []
    store.add_commit_listener(heard.append)
    connection = sqlite3.connect(tmp_path / "events.db")
    try:
        writer = store.joined(connection)
        result = writer.append("Order-1", new_events(2))
        connection.commit()
        assert heard == []
        writer.committed()
        assert heard == [result.positions[-1]]
        writer.committed()
        assert heard == [result.positions[-1]]
    finally:
        connection.close()
        store.close()


@pytest.mark.postgres
def test_a_postgres_writer_announces_only_once_told_its_owner_committed() -> None:
    """No `NOTIFY` in the owner's transaction: its commit would hold the cluster's lock."""
    dsn = postgres_dsn()
    import psycopg
    from psycopg import sql

    from tidings.store.postgres import PostgresStore

    schema = f"joined_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema=schema)
    store.stream_version("Warm-1")  # the schema exists before anyone listens
    try:
        with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn) as owner:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.notify_channel)))
            writer = store.joined(owner)
            result = writer.append("Order-1", new_events(2))
            owner.commit()
            heard = [int(n.payload) for n in listener.notifies(timeout=0.3, stop_after=1)]
            assert heard == [], "the owner's transaction sent a NOTIFY"
            writer.committed()
            heard = [int(n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
            assert heard == [result.positions[-1]]
            writer.committed()  # nothing more appended: nothing more announced
            assert [n for n in listener.notifies(timeout=0.3, stop_after=1)] == []
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@pytest.mark.postgres
def test_a_postgres_connection_in_autocommit_without_a_transaction_is_refused() -> None:
    dsn = postgres_dsn()
    import psycopg
    from psycopg import sql

    from tidings.store.postgres import PostgresStore

    schema = f"joined_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema=schema)
    try:
        with psycopg.connect(dsn, autocommit=True) as connection:
            with pytest.raises(ValueError, match="autocommit"):
                store.joined(connection).append("Order-1", new_events(1))
            with connection.transaction():
                store.joined(connection).append("Order-1", new_events(1))
        assert store.stream_version("Order-1") == 1
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
