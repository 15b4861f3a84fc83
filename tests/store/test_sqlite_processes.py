"""The SQLite store with another process on its file: read transactions, waits, wake-ups."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.sqlite_other_process import OtherProcess
from tidings.errors import StoreUnavailable
from tidings.store import AsyncSQLiteStore, SQLiteStore
from tidings.store.records import NewEvent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path, timeout=0.3)
    opened.migrate()
    yield opened
    opened.close()


def _event() -> NewEvent:
    from tests.projections.ledger import deposit

    return deposit("here")


def test_a_read_transaction_does_not_wait_for_another_process_holding_the_write_lock(
    path: Path, store: SQLiteStore
) -> None:
    store.append("Account-here", [_event()])
    other = OtherProcess("hold", str(path), "3")
    try:
        other.hold()
        with store.read_transaction() as tx:
            rows = tx.connection.execute("SELECT count(*) FROM tidings_events").fetchall()
        assert rows == [(1,)]
        assert other.running()  # the lock was still held all along
    finally:
        other.stop()


def test_a_read_transaction_refuses_to_write(store: SQLiteStore) -> None:
    with pytest.raises(StoreUnavailable, match="readonly"), store.read_transaction() as tx:
        tx.execute("CREATE TABLE notes (text TEXT)")
    with store.transaction() as tx:
        tx.execute("CREATE TABLE notes (text TEXT)")
    with store.read_transaction() as tx:  # its connection, back in the pool, reads on
        assert tx.query("SELECT count(*) FROM notes") == [(0,)]


def test_a_writer_gives_up_at_its_own_timeout_while_another_process_holds_the_lock(
    path: Path, store: SQLiteStore
) -> None:
    other = OtherProcess("hold", str(path), "5")
    try:
        other.hold()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.append("Account-here", [_event()])
        assert other.running()  # it gave up before the other let go
    finally:
        other.stop()
    assert store.read_all() == []


def test_a_writer_gets_in_once_another_process_lets_go_within_its_timeout(path: Path) -> None:
    patient = SQLiteStore(path, timeout=30)
    try:
        patient.migrate()
        other = OtherProcess("hold", str(path), "0.5")
        try:
            other.hold()
            position = patient.append("Account-here", [_event()]).positions[-1]
            assert other.line() == "released"  # it let go, then the append got in
        finally:
            other.stop()
        assert [record.position for record in patient.read_all()] == [position]
    finally:
        patient.close()


def test_commit_listeners_hear_a_commit_of_another_process(path: Path, store: SQLiteStore) -> None:
    heard = threading.Event()
    stop_listening = store.add_commit_listener(lambda position: heard.set())
    other = OtherProcess("append", str(path), "10")
    try:
        assert other.line() == "ready"
        heard.clear()  # opening the file may have been heard
        other.send()
        assert other.line().startswith("appended")
        assert heard.wait(10)
    finally:
        stop_listening()
        other.stop()
    assert [record.stream for record in store.read_all()] == ["Account-other"]


def test_without_a_watch_listeners_hear_only_this_stores_commits(path: Path) -> None:
    quiet = SQLiteStore(path, watch_interval=None)
    heard: list[int] = []
    try:
        stop_listening = quiet.add_commit_listener(heard.append)
        other = OtherProcess("append", str(path), "10")
        try:
            assert other.line() == "ready"
            other.send()
            assert other.line().startswith("appended")
        finally:
            other.stop()
        position = quiet.append("Account-here", [_event()]).positions[-1]
        stop_listening()
    finally:
        quiet.close()
    assert heard == [position]


def test_watch_interval_must_be_positive(path: Path) -> None:
    with pytest.raises(ValueError, match="watch_interval"):
        SQLiteStore(path, watch_interval=0)


def test_the_async_store_reads_and_gives_up_writing_as_the_blocking_one_does(path: Path) -> None:
    async def main() -> None:
        store = AsyncSQLiteStore(path, timeout=0.3)
        await store.migrate()
        other = OtherProcess("hold", str(path), "5")
        try:
            other.hold()
            async with store.read_transaction() as tx:
                assert await tx.query("SELECT count(*) FROM tidings_events") == [(0,)]
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.append("Account-here", [_event()])
            assert other.running()
        finally:
            other.stop()
            await store.aclose()

    asyncio.run(main())
