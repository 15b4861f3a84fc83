"""Projections on a SQLite file that another process writes: reads never queue, writers get in.

SQLite has one write lock for every process. What only reads (status,
`wait_for`) takes none; a runner catching up leaves it free between short
turns; and a runner hears other processes' commits without polling for them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Deposited, Ledger, deposit
from tests.store.sqlite_other_process import OtherProcess
from tidings import Envelope
from tidings.projections import AsyncProjectionRunner, ProjectionRunner, handles
from tidings.store import AsyncSQLiteStore, SQLiteStore


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    # A short timeout: the write lock held elsewhere for longer than it is what is tested.
    opened = SQLiteStore(path, timeout=0.5)
    yield opened
    opened.close()


class SlowLedger(Ledger):
    """The ledger, taking 10 ms an event inside its write transaction."""

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        time.sleep(0.01)
        return super().deposited(event, envelope, tx)


def _caught_up(store: SQLiteStore, count: int) -> None:
    store.append("Account-here", [deposit("here") for _ in range(count)])
    runner = ProjectionRunner(store, [Ledger()], poll_interval=0.05)
    with runner.running():
        runner.wait_for("ledger", count, timeout=10)


def test_status_and_wait_for_answer_while_another_process_holds_the_write_lock(
    path: Path, store: SQLiteStore
) -> None:
    _caught_up(store, 3)
    runner = ProjectionRunner(store, [Ledger()])
    other = OtherProcess("hold", str(path), "3")  # six times the store's timeout
    try:
        other.hold()
        [status] = runner.status()
        runner.wait_for("ledger", 3, timeout=10)
        assert other.running()  # neither waited for the lock
    finally:
        other.stop()
    assert (status.name, status.position, status.head, status.lag) == ("ledger", 3, 3, 0)


def test_a_writer_of_another_process_gets_in_while_a_runner_catches_up_a_backlog(
    path: Path, store: SQLiteStore
) -> None:
    backlog = 1000  # ten seconds of handling: batches of 500 would hold the lock 5 s each
    store.append("Account-here", [deposit("here") for _ in range(backlog)])
    other = OtherProcess("append", str(path), "2")
    runner = ProjectionRunner(store, [SlowLedger()], poll_interval=0.05)
    try:
        assert other.line() == "ready"
        with runner.running():
            deadline = time.monotonic() + 30
            while runner.status()[0].position == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            other.send()
            answer = other.line()
            [status] = runner.status()
    finally:
        other.stop()
    assert answer == f"appended {backlog + 1}"
    assert 0 < status.position < backlog  # it got in while the runner was still behind


def test_a_running_runner_hears_a_commit_of_another_process_without_polling(
    path: Path, store: SQLiteStore
) -> None:
    _caught_up(store, 1)
    # Polling alone would look again in 100 s: only hearing the commit ends the wait in time.
    runner = ProjectionRunner(store, [Ledger()], poll_interval=100, lease=300)
    other = OtherProcess("append", str(path), "10")
    try:
        assert other.line() == "ready"
        with runner.running():
            runner.wait_for("ledger", 1, timeout=10)
            other.send()
            answer = other.line()
            assert answer == "appended 2"
            runner.wait_for("ledger", 2, timeout=10)
            [status] = runner.status()
    finally:
        other.stop()
    assert (status.position, status.lag) == (2, 0)


def test_the_async_runner_answers_status_and_wait_for_while_another_process_holds_the_lock(
    path: Path, store: SQLiteStore
) -> None:
    _caught_up(store, 2)

    async def main() -> None:
        async_store = AsyncSQLiteStore(path, timeout=0.5)
        runner = AsyncProjectionRunner(async_store, [Ledger()])
        other = OtherProcess("hold", str(path), "3")
        try:
            other.hold()
            [status] = await runner.status()
            await runner.wait_for("ledger", 2, timeout=10)
            assert other.running()
        finally:
            other.stop()
            await async_store.aclose()
        assert (status.position, status.lag) == (2, 0)

    asyncio.run(main())


class SteadyLedger(Ledger):
    """The ledger, taking 2 ms an event: a replay of a few hundred lasts about a second."""

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        time.sleep(0.002)
        return super().deposited(event, envelope, tx)


def test_a_rebuild_waiting_on_another_runner_outlasts_another_process_holding_the_lock(
    path: Path, store: SQLiteStore
) -> None:
    for _ in range(300):
        last = store.append("Account-here", [deposit("here")]).positions[-1]
    settings: dict[str, Any] = {"batch_size": 10, "poll_interval": 0.05, "lease": 30}
    worker = ProjectionRunner(store, [SteadyLedger()], **settings)
    here = ProjectionRunner(store, [SteadyLedger()], **settings)
    other = OtherProcess("hold", str(path), "1.5")  # three times the store's timeout
    reports: list[int] = []

    def report(position: int, head: int) -> None:
        if position > 0 and not other.holds_now:  # the worker replays, the rebuild waits
            other.hold()
        reports.append(position)

    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        worker.wait_for("ledger", last, timeout=30)
        here.rebuild("ledger", report)
        [status] = here.status()
    finally:
        worker.stop()
        thread.join()
        other.stop()
    assert reports and reports[-1] == last
    assert (status.state.value, status.position) == ("running", last)
