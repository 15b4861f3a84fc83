"""SQLite appends of concurrent callers commit together, each caller keeping its own outcome.

Commits are counted in the WAL file: each commit ends with a frame that
records the database's size, every other frame records 0. The tests write
far fewer pages than SQLite's automatic checkpoint waits for, so every
commit of a test is still in the file when it counts them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
import pytest

from tidings.errors import WrongExpectedVersion
from tidings.store import AppendResult, AsyncSQLiteStore, NewEvent, SQLiteStore, StreamState

THREADS = 16


def new_events(count: int = 1, type: str = "Happened") -> list[NewEvent]:
    return [
        NewEvent(uuid.uuid4(), type, 1, b"{}", uuid.uuid4(), None, datetime.now(UTC))
        for _ in range(count)
    ]


def commits_in_wal(path: Path) -> int:
    """How many commits the database's WAL file holds (since SQLite last restarted it)."""
    wal = path.with_name(path.name + "-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    salts = wal[16:24]
    commits, offset = 0, 32
    while offset + 24 + page_size <= len(wal):
        frame = wal[offset : offset + 24]
        if frame[8:16] != salts:  # left over from before the last restart
            break
        commits += int.from_bytes(frame[4:8], "big") != 0
        offset += 24 + page_size
    return commits


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


def in_threads(calls: list[Callable[[], object]]) -> list[object]:
    """Each call in a thread of its own, all released together: its result or its exception."""
    outcomes: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def body(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = calls[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def queued_behind_a_transaction(
    store: SQLiteStore, calls: list[Callable[[], object]]
) -> list[object]:
    """Start every call while a transaction holds the write lock, then let them all in at once.

    Without group commit each call commits on its own once the lock is free;
    with it they queue, and the first to lead takes them all.
    """
    outcomes: list[object] = []
    runner = threading.Thread(target=lambda: outcomes.extend(in_threads(calls)))
    with store.transaction():
        runner.start()
        time.sleep(0.5)  # for every thread to queue its append
    runner.join(30)
    return outcomes


def test_threads_appending_to_distinct_streams_each_get_their_own_result(path: Path) -> None:
    store = SQLiteStore(path)
    batches = [new_events(1 + i % 3) for i in range(THREADS)]

    def appender(i: int) -> Callable[[], object]:
        def run() -> object:
            return [
                store.append(f"Order-{i}", batches[i], StreamState.NO_STREAM),
                store.append(f"Order-{i}", new_events(2), len(batches[i])),
            ]

        return run

    outcomes = in_threads([appender(i) for i in range(THREADS)])

    positions = []
    for i, outcome in enumerate(outcomes):
        assert isinstance(outcome, list), outcome
        first, second = outcome
        assert (first.stream, first.version) == (f"Order-{i}", len(batches[i]))
        assert (second.stream, second.version) == (f"Order-{i}", len(batches[i]) + 2)
        stored = store.read_stream(f"Order-{i}")
        assert [r.event_id for r in stored[: len(batches[i])]] == [e.event_id for e in batches[i]]
        assert [r.position for r in stored] == [*first.positions, *second.positions]
        positions += [*first.positions, *second.positions]
    assert sorted(positions) == [r.position for r in store.read_all()]
    store.close()


def test_threads_appending_to_one_stream_get_versions_without_gaps(path: Path) -> None:
    store = SQLiteStore(path)
    batches = [new_events(1 + i % 2) for i in range(THREADS)]

    outcomes = in_threads([partial(store.append, "Order-1", b) for b in batches])

    stored = {r.event_id: r for r in store.read_stream("Order-1")}
    assert sorted(r.version for r in stored.values()) == list(range(1, len(stored) + 1))
    assert len(stored) == sum(map(len, batches))
    for batch, result in zip(batches, outcomes, strict=True):
        assert isinstance(result, AppendResult), result
        mine = [stored[e.event_id] for e in batch]
        assert [r.position for r in mine] == list(result.positions)
        assert [r.version for r in mine] == list(
            range(result.version - len(batch) + 1, result.version + 1)
        )
    store.close()


def test_appends_queued_meanwhile_commit_together(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Warm-1", new_events(1))
    before = commits_in_wal(path)

    outcomes = queued_behind_a_transaction(
        store, [partial(store.append, f"Order-{i}", new_events(1)) for i in range(THREADS)]
    )

    assert all(isinstance(outcome, AppendResult) for outcome in outcomes), outcomes
    # One commit for the transaction, then one or two groups (a thread may come late).
    assert commits_in_wal(path) - before <= 3
    assert len(store.read_all()) == THREADS + 1
    store.close()


def test_a_wrong_expected_version_fails_its_caller_alone(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-taken", new_events(1))
    before = commits_in_wal(path)
    wrong = {3, 7, 11}

    def appender(i: int) -> Callable[[], object]:
        stream = "Order-taken" if i in wrong else f"Order-{i}"
        return lambda: store.append(stream, new_events(1), StreamState.NO_STREAM)

    outcomes = queued_behind_a_transaction(store, [appender(i) for i in range(THREADS)])

    assert commits_in_wal(path) - before <= 3  # they were in one group, or two
    for i, outcome in enumerate(outcomes):
        if i in wrong:
            assert isinstance(outcome, WrongExpectedVersion), outcome
        else:
            assert isinstance(outcome, AppendResult), outcome
            assert outcome.version == 1
            assert store.stream_version(f"Order-{i}") == 1
    assert store.stream_version("Order-taken") == 1
    assert len(store.read_all()) == 1 + THREADS - len(wrong)
    store.close()


def test_a_failing_group_commit_fails_every_caller_in_it(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Order-0", new_events(1))

    def fail() -> None:
        raise OSError("disk gone")

    def poison() -> None:
        # A temporary trigger lives on the writer connection until it closes.
        with store.transaction() as tx:
            tx.connection.create_function("fail", 0, fail)
            tx.connection.execute(
                "CREATE TEMP TRIGGER fail_on_boom BEFORE INSERT ON main.tidings_events"
                " WHEN NEW.type = 'Boom' BEGIN SELECT fail(); END"
            )

    poison()
    calls: list[Callable[[], object]] = [
        partial(store.append, f"Order-{i}", new_events(1)) for i in range(1, 6)
    ]
    calls.append(partial(store.append, "Order-9", new_events(1, "Boom")))

    outcomes = queued_behind_a_transaction(store, calls)

    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes), outcomes
    assert [r.stream for r in store.read_all()] == ["Order-0"]
    assert store.append("Order-1", new_events(1)).version == 1  # the next group commits
    store.close()


def test_async_tasks_appending_at_once_commit_together(path: Path) -> None:
    async def main() -> list[AppendResult]:
        async with AsyncSQLiteStore(path) as store:
            await store.append("Warm-1", new_events(1))
            results: list[AppendResult] = []

            async def append(i: int) -> None:
                results.append(
                    await store.append(f"Order-{i}", new_events(1), StreamState.NO_STREAM)
                )

            before = commits_in_wal(path)
            async with anyio.create_task_group() as tasks:
                for i in range(THREADS):
                    tasks.start_soon(append, i)
            assert commits_in_wal(path) - before < THREADS // 2
            assert len(await store.read_all()) == THREADS + 1
            return results

    results = anyio.run(main)
    assert sorted(r.stream for r in results) == sorted(f"Order-{i}" for i in range(THREADS))
    assert {r.version for r in results} == {1}
    assert len({r.positions for r in results}) == THREADS


def test_a_sequential_writer_commits_each_append_at_once(path: Path) -> None:
    store = SQLiteStore(path)
    store.append("Warm-1", new_events(1))
    before = commits_in_wal(path)
    for version in range(5):
        store.append("Order-1", new_events(1), version or StreamState.NO_STREAM)
        assert commits_in_wal(path) - before == version + 1  # durable when append returns
    store.close()


def test_async_callers_cancelled_while_queued_write_nothing_and_hold_no_one_up(
    path: Path,
) -> None:
    cancelled = {0, 3}  # the first leads the group, waiting for the write lock; 3 waits for it

    async def main() -> None:
        async with AsyncSQLiteStore(path) as store:
            scopes = [anyio.CancelScope() for _ in range(6)]

            async def append(i: int) -> None:
                with scopes[i]:
                    await store.append(f"Order-{i}", new_events(1))

            async with anyio.create_task_group() as tasks, store.transaction():
                for i in range(len(scopes)):
                    tasks.start_soon(append, i)
                await anyio.sleep(0.1)  # every task queues its append
                for i in cancelled:
                    scopes[i].cancel()
                await anyio.sleep(0.1)
            streams = {r.stream for r in await store.read_all()}
            assert streams == {f"Order-{i}" for i in range(len(scopes)) if i not in cancelled}

    anyio.run(main)
