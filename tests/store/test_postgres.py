"""What only the PostgreSQL store has to prove: `$all` without skips while writers run in
parallel, schema creation, shared transactions and lost connections.

The contract suite (`test_contract.py`) covers the semantics every backend shares.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from tests.services import postgres_dsn
from tests.store.backends import Blocking
from tests.store.readable import readable, wait_readable
from tests.store.rows import one
from tidings.errors import (
    ConcurrencyError,
    ConfigurationError,
    StoreUnavailable,
    WrongExpectedVersion,
)
from tidings.store import NewEvent, RecordedEvent, Snapshot, StreamState

pytest.importorskip("psycopg")
import psycopg
from psycopg import sql

from tidings.store.postgres import (
    EVENTS_PER_TRANSACTION,
    SCHEMA_VERSION,
    AsyncPostgresStore,
    PostgresStore,
)

pytestmark = pytest.mark.postgres

HOLD = 0.2  # how long each concurrent writer keeps its transaction open, in seconds


@pytest.fixture
def dsn() -> str:
    return postgres_dsn()


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    name = f"postgres_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def store(dsn: str, schema: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(dsn, schema=schema, max_size=20)
    yield opened
    opened.close()


def new_events(count: int = 1) -> list[NewEvent]:
    return [
        NewEvent(
            event_id=uuid.uuid4(),
            type="Happened",
            schema_version=1,
            data=b"{}",
            correlation_id=uuid.uuid4(),
            causation_id=None,
            occurred_at=datetime.now(UTC),
        )
        for _ in range(count)
    ]


def ids(records: list[RecordedEvent]) -> list[uuid.UUID]:
    return [record.event_id for record in records]


def in_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]


# $all: a reader never skips a transaction that commits late


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_reader_waits_for_a_transaction_held_open(store: PostgresStore, outcome: str) -> None:
    (start,) = store.append("Seed-1", new_events(1)).positions
    wait_readable(store, start)
    held = new_events(2)

    with store.transaction() as tx:
        held_at = tx.append("Held-1", held).positions
        later = [store.append(f"Later-{i}", new_events(1)) for i in range(4)]
        # The later transactions committed: their streams show them, `$all` does not yet.
        assert all(store.stream_version(f"Later-{i}") == 1 for i in range(4))
        assert store.read_all(after=start) == []
        assert max(held_at) < min(p for result in later for p in result.positions)
        if outcome == "rollback":
            tx.rollback()

    wait_readable(store)
    seen = store.read_all(after=start)
    later_ids = [record.event_id for i in range(4) for record in store.read_stream(f"Later-{i}")]
    if outcome == "commit":
        assert ids(seen) == [event.event_id for event in held] + later_ids
    else:
        assert ids(seen) == later_ids
    positions = [record.position for record in seen]
    assert positions == sorted(set(positions))


@pytest.fixture(params=["sync", "async"])
def either_store(request: pytest.FixtureRequest, dsn: str, schema: str) -> Iterator[Any]:
    """The blocking store, or the async one called through a portal."""
    if request.param == "sync":
        blocking = PostgresStore(dsn, schema=schema)
        yield blocking
        blocking.close()
        return
    with start_blocking_portal() as portal:
        wrapped = Blocking(portal.call(partial(AsyncPostgresStore, dsn, schema=schema)), portal)
        yield wrapped
        wrapped.close()


def in_request(correlation_id: uuid.UUID, count: int = 1) -> list[NewEvent]:
    return [replace(event, correlation_id=correlation_id) for event in new_events(count)]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_transaction_held_open_holds_back_the_head_and_correlated_reads(
    either_store: Any, outcome: str
) -> None:
    store = either_store
    request = uuid.uuid4()
    (start,) = store.append("Seed-1", in_request(request)).positions
    wait_readable(store, start)

    with store.transaction() as tx:
        held = tx.append("Held-1", in_request(request)).positions
        later = store.append("Later-1", in_request(request)).positions
        assert max(held) < min(later)
        # Later-1 committed, but showing it would put it before Held-1, which may commit yet.
        assert store.stream_version("Later-1") == 1
        assert store.head_position() == start
        assert [r.position for r in store.read_correlated(request)] == [start]
        if outcome == "rollback":
            tx.rollback()

    wait_readable(store)
    found = [r.position for r in store.read_correlated(request)]
    if outcome == "commit":
        assert found == [start, *held, *later]
    else:
        assert found == [start, *later]
    assert store.head_position() == later[-1]


def test_the_watermark_counts_events_a_transaction_held_open_holds_back(
    either_store: Any,
) -> None:
    store = either_store
    (start,) = store.append("Seed-1", new_events(1)).positions
    wait_readable(store, start)
    hold = 0.3

    with store.transaction() as tx:
        tx.append("Held-1", new_events(1))
        later = [store.append(f"Later-{i}", new_events(2)).positions for i in range(3)]
        time.sleep(hold)
        mark = store.watermark()
        assert mark.head == start
        assert mark.last_position == later[-1][-1]
        # Others' transactions may hold back more, never less.
        assert mark.held_back >= 6
        assert mark.held_for is not None and mark.held_for >= hold
        tx.rollback()

    deadline = time.monotonic() + 10
    while (mark := store.watermark()).held_back and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (mark.head, mark.last_position, mark.held_back, mark.held_for) == (
        later[-1][-1],
        later[-1][-1],
        0,
        0.0,
    )


def test_an_application_write_before_the_events_holds_readers_back(
    store: PostgresStore, dsn: str, schema: str
) -> None:
    """The case a sequence gets wrong: the transaction that writes first appends last."""
    create_table(dsn, schema)
    (start,) = store.append("Seed-1", new_events(1)).positions
    wait_readable(store, start)

    with store.transaction() as tx:
        insert_row(tx.connection, schema, "first")  # the transaction gets its id here
        other = store.append("Other-1", new_events(1))
        assert store.read_all(after=start) == []
        mine = tx.append("Mine-1", new_events(1))
        assert store.read_all(after=start) == []

    wait_readable(store)
    seen = store.read_all(after=start)
    assert [r.position for r in seen] == [*mine.positions, *other.positions]
    assert [r.stream for r in seen] == ["Mine-1", "Other-1"]


def test_positions_are_made_of_the_transaction_id(store: PostgresStore) -> None:
    with store.transaction() as tx:
        first = tx.append("Order-1", new_events(2))
        second = tx.append("Order-2", new_events(1))
        (xid,) = one(tx.connection.execute("SELECT pg_current_xact_id()::text::bigint"))

    assert [*first.positions, *second.positions] == [
        xid * EVENTS_PER_TRANSACTION + n for n in range(3)
    ]


# Writers run in parallel, except on one stream


def test_writers_on_distinct_streams_run_concurrently(store: PostgresStore) -> None:
    writers = 8
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        start.wait()
        with store.transaction() as tx:
            tx.append(f"Writer-{index}", new_events(1), StreamState.NO_STREAM)
            time.sleep(HOLD)

    began = time.perf_counter()
    in_threads(writers, write)
    elapsed = time.perf_counter() - began

    assert elapsed < writers * HOLD / 2, f"{writers} writers took {elapsed:.2f} s"
    wait_readable(store)
    assert len(store.read_all()) == writers


def test_writers_of_one_stream_take_turns(store: PostgresStore) -> None:
    writers = 3
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        start.wait()
        with store.transaction() as tx:
            tx.append("Order-1", new_events(1))
            time.sleep(HOLD)

    began = time.perf_counter()
    in_threads(writers, write)

    assert time.perf_counter() - began >= writers * HOLD
    assert [r.version for r in store.read_stream("Order-1")] == [1, 2, 3]


def test_async_writers_on_distinct_streams_run_concurrently(dsn: str, schema: str) -> None:
    writers = 8

    async def write(store: AsyncPostgresStore, index: int) -> None:
        async with store.transaction() as tx:
            await tx.append(f"Writer-{index}", new_events(1), StreamState.NO_STREAM)
            await anyio.sleep(HOLD)

    async def scenario() -> tuple[float, int]:
        store = AsyncPostgresStore(dsn, schema=schema)
        try:
            await store.append("Seed-1", new_events(1))
            began = time.perf_counter()
            async with anyio.create_task_group() as group:
                for index in range(writers):
                    group.start_soon(write, store, index)
            elapsed = time.perf_counter() - began
            await readable(store)
            return elapsed, len(await store.read_all())
        finally:
            await store.aclose()

    elapsed, count = anyio.run(scenario)

    assert elapsed < writers * HOLD / 2, f"{writers} writers took {elapsed:.2f} s"
    assert count == writers + 1


def test_racing_read_then_append_transactions_get_contiguous_versions(
    store: PostgresStore,
) -> None:
    writers = 16
    store.append("Order-1", new_events(1))
    batches = [new_events(1) for _ in range(writers)]
    read_all_first = threading.Barrier(writers)
    first_round_over = threading.Barrier(writers)
    first_round: list[object] = [None] * writers

    def write(index: int) -> None:
        try:
            with store.transaction() as tx:
                (last,) = tx.read_stream("Order-1", backwards=True, limit=1)
                read_all_first.wait()
                first_round[index] = tx.append("Order-1", batches[index], last.version)
        except WrongExpectedVersion as exc:
            first_round[index] = exc
        first_round_over.wait()
        if not isinstance(first_round[index], WrongExpectedVersion):
            return
        while True:
            try:
                store.append("Order-1", batches[index], store.stream_version("Order-1") or 0)
                return
            except WrongExpectedVersion:
                continue

    in_threads(writers, write)

    conflicts = [r for r in first_round if isinstance(r, WrongExpectedVersion)]
    assert len(conflicts) == writers - 1
    assert all((c.stream, c.expected, c.actual) == ("Order-1", 1, 2) for c in conflicts)
    records = store.read_stream("Order-1")
    assert [r.version for r in records] == list(range(1, writers + 2))
    assert sorted(ids(records)[1:]) == sorted(batch[0].event_id for batch in batches)
    wait_readable(store)
    assert [r.event_id for r in store.read_all()] == ids(records)


def test_an_append_that_would_put_a_stream_out_of_order_must_be_retried(
    store: PostgresStore,
) -> None:
    store.append("Order-1", new_events(1))
    mine = new_events(1)

    with pytest.raises(ConcurrencyError) as raised, store.transaction() as tx:
        tx.connection.execute("SELECT pg_current_xact_id()")  # an early write gets the id
        store.append("Order-1", new_events(1))  # a younger transaction appends first
        tx.append("Order-1", mine)

    assert not isinstance(raised.value, WrongExpectedVersion)
    assert store.append("Order-1", mine).version == 3
    wait_readable(store)
    assert [r.version for r in store.read_all()] == [1, 2, 3]


# One transaction with the application's own writes


def create_table(dsn: str, schema: str) -> None:
    """An application table, in the store's schema before the store makes its own tables."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        connection.execute(
            sql.SQL("CREATE TABLE {} (name text)").format(sql.Identifier(schema, "rows"))
        )


def insert_row(connection: Any, schema: str, name: str) -> None:
    connection.execute(
        sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(schema, "rows")), (name,)
    )


def stored_rows(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            sql.SQL("SELECT name FROM {}").format(sql.Identifier(schema, "rows"))
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.parametrize("outcome", ["commit", "error"])
def test_application_writes_commit_or_roll_back_with_the_events(
    store: PostgresStore, dsn: str, schema: str, outcome: str
) -> None:
    class Boom(Exception):
        pass

    create_table(dsn, schema)
    expected_error = pytest.raises(Boom) if outcome == "error" else nullcontext()
    with expected_error, store.transaction() as tx:
        insert_row(tx.connection, schema, "allocated")
        tx.append("Order-1", new_events(2))
        if outcome == "error":
            raise Boom

    kept = outcome == "commit"
    assert stored_rows(dsn, schema) == (["allocated"] if kept else [])
    assert len(store.read_stream("Order-1")) == (2 if kept else 0)


def test_a_transaction_whose_statement_failed_does_not_commit(
    store: PostgresStore, dsn: str, schema: str
) -> None:
    create_table(dsn, schema)
    with pytest.raises(RuntimeError, match="rolled"), store.transaction() as tx:
        tx.append("Order-1", new_events(1))
        with pytest.raises(psycopg.errors.UndefinedTable):
            tx.connection.execute("SELECT * FROM no_such_table")

    assert store.read_all() == []


# Lost connections


@pytest.mark.parametrize("failing", ["append", "commit"])
def test_a_lost_connection_is_unavailable_and_keeps_nothing(
    store: PostgresStore, dsn: str, schema: str, failing: str
) -> None:
    create_table(dsn, schema)
    store.append("Seed-1", new_events(1))

    with pytest.raises(StoreUnavailable), store.transaction() as tx:
        insert_row(tx.connection, schema, "half")
        tx.append("Order-1", new_events(3))
        terminate(dsn, tx.connection.info.backend_pid)
        if failing == "append":
            tx.append("Order-1", new_events(2))

    assert store.read_stream("Order-1") == []
    assert stored_rows(dsn, schema) == []
    assert store.append("Order-1", new_events(1)).version == 1  # the pool replaced it


def test_an_async_transaction_on_a_lost_connection_is_unavailable_and_keeps_nothing(
    dsn: str, schema: str
) -> None:
    async def main() -> None:
        store = AsyncPostgresStore(dsn, schema=schema)
        try:
            await store.append("Seed-1", new_events(1))
            with pytest.raises(StoreUnavailable):
                async with store.transaction() as tx:
                    await tx.append("Order-1", new_events(3))
                    await anyio.to_thread.run_sync(terminate, dsn, tx.connection.info.backend_pid)
                    await tx.append("Order-1", new_events(2))
            assert await store.read_stream("Order-1") == []
            assert (await store.append("Order-1", new_events(1))).version == 1
        finally:
            await store.aclose()

    anyio.run(main)


def test_a_joined_connection_lost_is_unavailable_and_keeps_nothing(
    store: PostgresStore, dsn: str
) -> None:
    store.append("Seed-1", new_events(1))
    with psycopg.connect(dsn) as connection:
        writer = store.joined(connection)
        writer.append("Order-1", new_events(3))
        terminate(dsn, connection.info.backend_pid)
        with pytest.raises(StoreUnavailable):
            writer.append("Order-1", new_events(2))

    assert store.read_stream("Order-1") == []
    wait_readable(store)
    assert len(store.read_all()) == 1


def terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        (done,) = one(admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)))
    assert done


def test_an_unreachable_server_is_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable):
            store.append("Order-1", new_events(1))
        with pytest.raises(StoreUnavailable):
            store.read_all()
    finally:
        store.close()


# Schema


def test_a_schema_at_version_1_gains_the_snapshot_table_and_keeps_its_events(
    dsn: str, schema: str
) -> None:
    first = PostgresStore(dsn, schema=schema)
    first.append("Order-1", new_events(2))
    first.close()
    with psycopg.connect(dsn) as raw:  # as the first release left it
        raw.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "snapshots")))
        raw.execute(
            sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "events_correlation_position"))
        )
        raw.execute(
            sql.SQL("DELETE FROM {} WHERE version > 1").format(
                sql.Identifier(schema, "schema_version")
            )
        )

    store = PostgresStore(dsn, schema=schema)
    try:
        assert store.stream_version("Order-1") == 2
        assert store.save_snapshot(Snapshot("Order-1", 2, "shape", b"{}"))
        assert store.read_snapshot("Order-1") == Snapshot("Order-1", 2, "shape", b"{}")
    finally:
        store.close()


def test_a_schema_at_version_2_gains_the_correlation_index_and_keeps_its_events(
    dsn: str, schema: str
) -> None:
    request = uuid.uuid4()
    first = PostgresStore(dsn, schema=schema)
    first.append("Order-1", new_events(2))
    (position,) = first.append("Order-2", in_request(request)).positions
    first.close()
    with psycopg.connect(dsn) as raw:  # as the second release left it
        raw.execute(
            sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "events_correlation_position"))
        )
        raw.execute(
            sql.SQL("DELETE FROM {} WHERE version > 2").format(
                sql.Identifier(schema, "schema_version")
            )
        )

    store = PostgresStore(dsn, schema=schema)
    try:
        wait_readable(store, position)
        assert [(r.stream, r.position) for r in store.read_correlated(request)] == [
            ("Order-2", position)
        ]
        assert store.head_position() == position
    finally:
        store.close()
    with psycopg.connect(dsn) as raw:
        indexes = raw.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'events'",
            (schema,),
        ).fetchall()
        recorded = raw.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(
                sql.Identifier(schema, "schema_version")
            )
        ).fetchall()
    assert any('(correlation_id, "position")' in row[0] for row in indexes), indexes
    assert recorded == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_concurrent_first_users_create_the_schema_once(dsn: str, schema: str) -> None:
    users = 4
    stores = [PostgresStore(dsn, schema=schema) for _ in range(users)]
    start = threading.Barrier(users)

    def first_use(index: int) -> None:
        start.wait()
        stores[index].append(f"Order-{index}", new_events(1))

    try:
        in_threads(users, first_use)
    finally:
        for opened in stores:
            opened.close()

    with psycopg.connect(dsn) as connection:
        versions = connection.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(
                sql.Identifier(schema, "schema_version")
            )
        ).fetchall()
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_a_schema_newer_than_this_release_is_refused(
    store: PostgresStore, dsn: str, schema: str
) -> None:
    store.append("Order-1", new_events(1))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("INSERT INTO {} (version) VALUES (99)").format(
                sql.Identifier(schema, "schema_version")
            )
        )

    newer = PostgresStore(dsn, schema=schema)
    try:
        with pytest.raises(ConfigurationError, match="99"):
            newer.read_all()
    finally:
        newer.close()


def test_a_transaction_appends_at_most_2_to_the_20_events(store: PostgresStore) -> None:
    too_many = new_events(1) * (EVENTS_PER_TRANSACTION + 1)

    with pytest.raises(ValueError, match="at most"):
        store.append("Order-1", too_many)
    with pytest.raises(ValueError, match="at most"), store.transaction() as tx:
        tx.append("Order-1", new_events(1))
        tx.append("Order-2", too_many[:EVENTS_PER_TRANSACTION])
    assert store.read_all() == []


def test_migrate_makes_the_schema_now_and_tells_the_versions(dsn: str, schema: str) -> None:
    first = PostgresStore(dsn, schema=schema)
    assert first.migrate() == (0, SCHEMA_VERSION)
    first.close()
    second = PostgresStore(dsn, schema=schema)
    assert second.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    second.close()


def test_an_application_table_made_without_a_schema_goes_beside_the_log(
    store: PostgresStore, schema: str
) -> None:
    with store.transaction() as tx:
        tx.execute("CREATE TABLE balances (account TEXT PRIMARY KEY, balance BIGINT)")
        tx.execute("INSERT INTO balances VALUES (?, ?)", ("a", 5))
    with store.transaction() as tx:
        placed = tx.query(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'balances'"
            " AND table_schema = ?",
            (schema,),
        )
        assert placed == [(schema,)]
        assert tx.query(f'SELECT balance FROM "{schema}".balances') == [(5,)]
    # Names the store's schema does not hold are still found where they were.
    shared = f"shared_{uuid.uuid4().hex[:12]}"
    with store.transaction() as tx:
        tx.execute(f"CREATE TABLE public.{shared} (n INTEGER)")
        tx.execute(f"INSERT INTO public.{shared} VALUES (7)")
    try:
        with store.transaction() as tx:
            assert tx.query(f"SELECT n FROM {shared}") == [(7,)]
    finally:
        with store.transaction() as tx:
            tx.execute(f"DROP TABLE public.{shared}")
