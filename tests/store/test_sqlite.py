"""What the SQLite store promises beyond the contract: its file, its schema, its failures."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from tests.store.sqlite_first_user import ROUNDS
from tidings.errors import ConfigurationError, StoreUnavailable
from tidings.store import AsyncSQLiteStore, NewEvent, Snapshot, SQLiteStore, StreamState
from tidings.store.sqlite_sql import SCHEMA_VERSION


def new_events(count: int = 1, type: str = "Happened") -> list[NewEvent]:
    return [
        NewEvent(uuid.uuid4(), type, 1, b"{}", uuid.uuid4(), None, datetime.now(UTC))
        for _ in range(count)
    ]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


def keep_versions_on_stream_rows(raw: sqlite3.Connection) -> None:
    """Put back the stream rows' versions, as every release before schema 4 kept them."""
    raw.execute("ALTER TABLE tidings_streams ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
    raw.execute(
        "UPDATE tidings_streams"
        " SET version = (SELECT max(version) FROM tidings_events WHERE stream = name)"
    )


@pytest.mark.parametrize(("durable", "synchronous"), [(True, 2), (False, 1)])
def test_the_file_is_in_wal_mode_and_durable_by_default(
    path: Path, durable: bool, synchronous: int
) -> None:
    store = SQLiteStore(path) if durable else SQLiteStore(path, durable=False)
    with store.transaction() as tx:
        assert tx.connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert tx.connection.execute("PRAGMA synchronous").fetchone() == (synchronous,)
    store.close()


def test_the_schema_version_is_recorded_on_first_use(path: Path) -> None:
    store = SQLiteStore(path)
    assert store.read_all() == []
    store.close()

    with sqlite3.connect(path) as raw:
        recorded = raw.execute("SELECT version FROM tidings_schema ORDER BY version").fetchall()
    assert recorded == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_a_file_with_a_newer_schema_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE tidings_schema (version INTEGER PRIMARY KEY, applied_at TEXT)")
        raw.execute("INSERT INTO tidings_schema VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
    store = SQLiteStore(path)

    with pytest.raises(ConfigurationError, match="upgrade tidings"):
        store.append("Order-1", new_events(1))
    with pytest.raises(ConfigurationError):
        store.read_all()
    store.close()


def test_a_file_at_schema_1_gains_the_snapshot_table_and_keeps_its_events(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-1", new_events(2))
    store.close()
    with sqlite3.connect(path) as raw:  # as the first release left it
        keep_versions_on_stream_rows(raw)
        raw.execute("DROP TABLE tidings_snapshots")
        raw.execute("DROP INDEX tidings_events_correlation")
        raw.execute("DELETE FROM tidings_schema WHERE version > 1")
    raw.close()

    store = SQLiteStore(path)
    try:
        assert store.stream_version("Order-1") == 2
        assert store.save_snapshot(Snapshot("Order-1", 2, "shape", b"{}"))
        assert store.read_snapshot("Order-1") == Snapshot("Order-1", 2, "shape", b"{}")
    finally:
        store.close()
    with sqlite3.connect(path) as raw:
        recorded = raw.execute("SELECT version FROM tidings_schema ORDER BY version").fetchall()
    raw.close()
    assert recorded == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_a_file_at_schema_2_gains_the_correlation_index_and_keeps_its_events(
    path: Path,
) -> None:
    request = uuid.uuid4()
    store = SQLiteStore(path)
    store.append("Order-1", new_events(2))
    store.append("Order-2", [replace(new_events(1)[0], correlation_id=request)])
    store.close()
    with sqlite3.connect(path) as raw:  # as the second release left it
        keep_versions_on_stream_rows(raw)
        raw.execute("DROP INDEX tidings_events_correlation")
        raw.execute("DELETE FROM tidings_schema WHERE version > 2")
    raw.close()

    store = SQLiteStore(path)
    try:
        assert [(r.stream, r.position) for r in store.read_correlated(request)] == [("Order-2", 3)]
        assert store.head_position() == 3
    finally:
        store.close()
    with sqlite3.connect(path) as raw:
        recorded = raw.execute("SELECT version FROM tidings_schema ORDER BY version").fetchall()
        plan = raw.execute(
            "EXPLAIN QUERY PLAN SELECT position FROM tidings_events"
            " WHERE correlation_id = ? ORDER BY position",
            (request.bytes,),
        ).fetchall()
    raw.close()
    assert recorded == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
    assert any("USING COVERING INDEX tidings_events_correlation" in row[-1] for row in plan), plan


def test_a_file_at_schema_3_keeps_its_streams_versions_and_deletes(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-1", new_events(3))
    store.append("Order-2", new_events(2))
    store.delete_stream("Order-2")
    store.close()
    with sqlite3.connect(path) as raw:  # as the third release left it: versions on stream rows
        keep_versions_on_stream_rows(raw)
        raw.execute("DELETE FROM tidings_schema WHERE version > 3")
    raw.close()

    store = SQLiteStore(path)
    try:
        assert store.migrate() == (3, SCHEMA_VERSION)
        assert store.stream_version("Order-1") == 3
        assert store.stream_version("Order-2") is None
        assert [
            (s.name, s.version, s.deleted) for s in store.list_streams(include_deleted=True)
        ] == [
            ("Order-1", 3, False),
            ("Order-2", 2, True),
        ]
        assert store.append("Order-1", new_events(1), 3).version == 4
        revived = store.append("Order-2", new_events(1), StreamState.NO_STREAM)
        assert revived.version == 3
        assert [r.version for r in store.read_stream("Order-2")] == [3]
    finally:
        store.close()
    with sqlite3.connect(path) as raw:
        columns = [row[1] for row in raw.execute("PRAGMA table_info(tidings_streams)")]
    raw.close()
    assert "version" not in columns


def test_an_append_to_an_existing_stream_leaves_its_row_alone(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-1", new_events(1))
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TRIGGER count_stream_writes AFTER UPDATE ON tidings_streams"
            " BEGIN SELECT RAISE(ABORT, 'the stream row was written'); END"
        )
    raw.close()

    assert store.append("Order-1", new_events(2), 1).version == 3
    assert store.stream_version("Order-1") == 3
    store.close()


def test_events_survive_reopening_the_file(path: Path) -> None:
    first = SQLiteStore(path)
    written = first.append("Order-1", new_events(2))
    first.close()

    second = SQLiteStore(path)
    assert [r.position for r in second.read_all()] == list(written.positions)
    result = second.append("Order-1", new_events(1), 2)
    assert result.version == 3
    assert result.positions[0] > written.positions[-1]
    second.close()


@pytest.mark.parametrize("path_text", ["", ":memory:"])
def test_a_store_needs_a_file(path_text: str) -> None:
    with pytest.raises(ValueError, match="needs a file"):
        SQLiteStore(path_text)


def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing" / "events.db")
    with pytest.raises(StoreUnavailable, match=r"events\.db"):
        store.append("Order-1", new_events(1))
    with pytest.raises(StoreUnavailable):
        store.read_all()


def test_a_statement_sqlite_cannot_run_is_its_error_not_an_unavailable_store(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-1", new_events(1))
    with sqlite3.connect(path) as raw:  # the schema broken behind the store's back
        raw.execute("ALTER TABLE tidings_events RENAME TO elsewhere")
    with pytest.raises(sqlite3.OperationalError, match="no such table") as raised:
        store.read_all()
    assert not isinstance(raised.value, StoreUnavailable)
    store.close()


def test_application_state_commits_and_rolls_back_with_the_events(path: Path) -> None:
    store = SQLiteStore(path)
    with store.transaction() as tx:
        tx.connection.execute("CREATE TABLE products (sku TEXT PRIMARY KEY, qty INTEGER)")
        tx.connection.execute("INSERT INTO products VALUES ('LAMP', 10)")
        tx.append("Product-LAMP", new_events(1), StreamState.NO_STREAM)

    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx.connection.execute("UPDATE products SET qty = 7 WHERE sku = 'LAMP'")
        tx.append("Product-LAMP", new_events(1), 1)
        tx.connection.execute("INSERT INTO products VALUES ('LAMP', 1)")

    with store.transaction() as tx:
        assert tx.connection.execute("SELECT qty FROM products").fetchall() == [(10,)]
    assert store.stream_version("Product-LAMP") == 1
    store.close()


def test_a_database_locked_elsewhere_is_unavailable_and_keeps_nothing(path: Path) -> None:
    store = SQLiteStore(path, timeout=0.1)
    store.append("Order-1", new_events(1))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    with pytest.raises(StoreUnavailable, match="locked"):
        store.append("Order-1", new_events(2))
    assert store.stream_version("Order-1") == 1  # readers do not wait for the writer

    other.execute("ROLLBACK")
    other.close()
    assert store.append("Order-1", new_events(1), 1).version == 2
    store.close()


def test_a_writer_kept_waiting_by_a_transaction_gets_unavailable(path: Path) -> None:
    store = SQLiteStore(path, timeout=0.1)
    outcome: list[BaseException] = []

    def append() -> None:
        try:
            store.append("Order-2", new_events(1))
        except StoreUnavailable as exc:
            outcome.append(exc)

    with store.transaction() as tx:
        tx.append("Order-1", new_events(1))
        waiting = threading.Thread(target=append)
        waiting.start()
        waiting.join(5)

    assert len(outcome) == 1
    assert [r.stream for r in store.read_all()] == ["Order-1"]
    store.close()


def test_a_failure_mid_batch_keeps_nothing_of_the_transaction(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-1", new_events(1))

    def fail() -> None:
        raise OSError("disk gone")

    with (
        pytest.raises(sqlite3.OperationalError, match="user-defined function"),
        store.transaction() as tx,
    ):
        tx.connection.create_function("fail", 0, fail)
        tx.connection.execute(
            "CREATE TEMP TRIGGER fail_on_boom BEFORE INSERT ON main.tidings_events"
            " WHEN NEW.type = 'Boom' BEGIN SELECT fail(); END"
        )
        tx.append("Order-2", new_events(2))
        tx.append("Order-1", [*new_events(2), *new_events(1, "Boom")])

    assert [(r.stream, r.version) for r in store.read_all()] == [("Order-1", 1)]
    assert store.stream_version("Order-2") is None
    assert store.append("Order-1", new_events(1, "Boom"), 1).version == 2
    store.close()


def test_two_stores_on_one_file_write_in_turn(path: Path) -> None:
    stores = [SQLiteStore(path, durable=False), SQLiteStore(path, durable=False)]
    stores[0].read_all()  # creates the schema before the race

    def write(store: SQLiteStore, index: int) -> None:
        for _ in range(10):
            store.append("Shared-1", new_events(1))
            store.append(f"Own-{index}", new_events(1))

    threads = [threading.Thread(target=write, args=(stores[i % 2], i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    log = stores[1].read_all()
    assert len(log) == 80
    positions = [r.position for r in log]
    assert positions == sorted(set(positions))
    assert [r.version for r in stores[0].read_stream("Shared-1")] == list(range(1, 41))
    for store in stores:
        store.close()


def test_async_tasks_holding_transactions_across_awaits_take_turns(path: Path) -> None:
    async def main() -> list[tuple[str, int]]:
        store = AsyncSQLiteStore(path)

        async def work(index: int) -> None:
            async with store.transaction() as tx:
                await tx.append(f"Task-{index}", new_events(1), StreamState.NO_STREAM)
                await anyio.sleep(0.001)
                await tx.append(f"Task-{index}", new_events(1), 1)

        async with anyio.create_task_group() as tasks:
            for index in range(8):
                tasks.start_soon(work, index)
        records = await store.read_all()
        await store.aclose()
        return [(r.stream, r.version) for r in records]

    written = asyncio.run(main())

    assert sorted(written) == [(f"Task-{i}", v) for i in range(8) for v in (1, 2)]
    for index in range(8):
        mine = [version for stream, version in written if stream == f"Task-{index}"]
        assert mine == [1, 2]


def test_migrate_makes_the_schema_now_and_tells_the_versions(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "events.db")
    assert first.migrate() == (0, SCHEMA_VERSION)
    assert first.migrate() == (0, SCHEMA_VERSION)  # what this store's first use did
    first.close()
    second = SQLiteStore(tmp_path / "events.db")
    assert second.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    second.close()


# First use of a file while others write it


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_first_use_of_a_rollback_journal_file_waits_for_its_writer(
    path: Path, asynchronous: bool
) -> None:
    """Switching to WAL needs the file to itself: the store waits for it, up to `timeout`."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE app (x)")
    assert holder.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO app VALUES (1)")
    release = threading.Timer(0.5, holder.execute, ("COMMIT",))
    began = time.monotonic()
    release.start()
    try:
        if asynchronous:

            async def first_use() -> int:
                store = AsyncSQLiteStore(path, timeout=10)
                try:
                    return (await store.append("Order-1", new_events(1))).version
                finally:
                    await store.aclose()

            version = anyio.run(first_use)
        else:
            store = SQLiteStore(path, timeout=10)
            try:
                version = store.append("Order-1", new_events(1)).version
            finally:
                store.close()
    finally:
        release.join()
        holder.close()

    assert version == 1
    assert time.monotonic() - began >= 0.45
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("SELECT x FROM app").fetchall() == [(1,)]


def test_first_use_gives_up_after_the_timeout_while_the_writer_holds_on(path: Path) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE app (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO app VALUES (1)")
    store = SQLiteStore(path, timeout=0.5)
    began = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.append("Order-1", new_events(1))
        waited = time.monotonic() - began
    finally:
        store.close()
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.45 <= waited < 5


def test_processes_starting_on_a_new_file_at_once_all_get_in(tmp_path: Path) -> None:
    processes = 16
    start = time.time() + 3  # every process has imported tidings by then
    started = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.store.sqlite_first_user",
                str(tmp_path),
                str(index),
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(processes)
    ]
    outputs = [process.communicate(timeout=60) for process in started]

    failures = [
        err for process, (_, err) in zip(started, outputs, strict=True) if process.returncode
    ]
    assert not failures, failures[0]
    assert all(out.split() == ["appended"] * ROUNDS for out, _ in outputs)
    for round_ in range(ROUNDS):
        with sqlite3.connect(tmp_path / f"round-{round_}.db") as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            streams = raw.execute("SELECT stream FROM tidings_events").fetchall()
            recorded = raw.execute("SELECT version FROM tidings_schema ORDER BY version").fetchall()
        assert sorted(stream for (stream,) in streams) == sorted(
            f"Process-{index}" for index in range(processes)
        )
        assert recorded == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
