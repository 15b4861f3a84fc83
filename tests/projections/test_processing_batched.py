"""A projection's batch of `tx.execute` statements, as PostgreSQL sends them in one pipeline.

The statements of a batch are sent without waiting for each, so a failure
is known only at the end of the batch: the runner must still find the
event that caused it, and a read in a handler must see the batch's earlier
writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Backend, Deposited, backend, deposit
from tests.store.readable import wait_readable
from tidings import Envelope
from tidings.projections import (
    AsyncProjectionRunner,
    Projection,
    ProjectionRunner,
    ProjectionState,
    ProjectionStopped,
    handles,
)
from tidings.retry import Retry
from tidings.store import (
    AsyncReadModelTransaction,
    ReadModelTransaction,
    SQLiteTransaction,
)
from tidings.store.postgres import PostgresTransaction


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


class Running(Projection):
    """A running balance per account kept by reading it back: each event depends on the last."""

    name = "running"
    retry = Retry(attempts=2, first_delay=0)

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS running (position BIGINT PRIMARY KEY,"
            " account TEXT NOT NULL, balance BIGINT NOT NULL CHECK (balance >= 0))"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM running")

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: ReadModelTransaction
    ) -> None:
        [(last,)] = tx.query(
            "SELECT coalesce(max(balance), 0) FROM running WHERE account = ?"
            " AND position = (SELECT max(position) FROM running WHERE account = ?)",
            (event.account, event.account),
        )
        assert isinstance(last, int)
        tx.execute(
            "INSERT INTO running (position, account, balance) VALUES (?, ?, ?)",
            (envelope.position, event.account, last + event.amount),
        )


def balances(store: Any) -> list[tuple[object, ...]]:
    with store.transaction() as tx:
        rows: list[tuple[object, ...]] = tx.query(
            "SELECT account, balance FROM running ORDER BY position"
        )
    return rows


def test_reads_in_a_batch_see_its_earlier_writes(env: Backend) -> None:
    store = env.open(False)
    amounts = [(f"a{i % 3}", i) for i in range(1, 40)]
    appended = store.append("Account-1", [deposit(account, n) for account, n in amounts])
    wait_readable(store, appended.positions[-1])
    runner = ProjectionRunner(
        store, [Running()], batch_size=25, poll_interval=0.05, lease=2.0, retry_waits=False
    )
    with runner.running():
        runner.wait_for("running", appended.positions[-1], timeout=30)
    totals: dict[str, int] = {}
    want = []
    for account, n in amounts:
        totals[account] = totals.get(account, 0) + n
        want.append((account, totals[account]))
    assert balances(store) == want
    store.close()


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_a_statement_failing_in_a_batch_parks_at_its_own_event(name: str, tmp_path: Path) -> None:
    # The check fails at the fifth event, on a statement sent long before the batch ends.
    with backend(name, tmp_path) as env:
        _parks_at_its_own_event(env)


def _parks_at_its_own_event(env: Backend) -> None:
    store = env.open(False)
    amounts = [5, 1, 1, 1, -9, 2, 2]
    appended = store.append("Account-1", [deposit("a", amount) for amount in amounts])
    wait_readable(store, appended.positions[-1])
    runner = ProjectionRunner(
        store, [Running()], batch_size=100, poll_interval=0.05, lease=2.0, retry_waits=False
    )
    with runner.running(), pytest.raises(ProjectionStopped, match="running"):
        runner.wait_for("running", appended.positions[-1], timeout=30)
    [status] = runner.status()
    assert status.state is ProjectionState.PARKED
    assert status.failed_position == appended.positions[4]
    assert status.position == appended.positions[3]
    assert balances(store) == [("a", 5), ("a", 6), ("a", 7), ("a", 8)]
    store.close()


class Mixed(Projection):
    """A handler that writes through `tx.execute` and then through the driver's connection."""

    name = "mixed"

    def __init__(self, postgres: bool) -> None:
        self.mark = "%s" if postgres else "?"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS mixed (account TEXT PRIMARY KEY, n BIGINT)")

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM mixed")

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: ReadModelTransaction
    ) -> None:
        tx.execute(
            "INSERT INTO mixed (account, n) VALUES (?, 0) ON CONFLICT (account) DO NOTHING",
            (event.account,),
        )
        # The driver's connection is a backend's own: its transaction type says which.
        assert isinstance(tx, SQLiteTransaction | PostgresTransaction)
        tx.connection.execute(
            f"UPDATE mixed SET n = n + {self.mark} WHERE account = {self.mark}",
            (event.amount, event.account),
        )


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_a_handler_using_the_connection_beside_execute_still_counts_each_event_once(
    name: str, tmp_path: Path
) -> None:
    with backend(name, tmp_path) as env:
        store = env.open(False)
        events = [deposit(f"a{i % 4}", i) for i in range(1, 30)]
        appended = store.append("Account-1", events)
        wait_readable(store, appended.positions[-1])
        runner = ProjectionRunner(
            store,
            [Mixed(name == "postgres")],
            batch_size=10,
            poll_interval=0.05,
            lease=2.0,
            retry_waits=False,
        )
        with runner.running():
            runner.wait_for("mixed", appended.positions[-1], timeout=30)
        with store.transaction() as tx:
            rows = tx.query("SELECT account, n FROM mixed ORDER BY account")
        assert rows == [(f"a{k}", sum(i for i in range(1, 30) if i % 4 == k)) for k in range(4)]
        store.close()


class AsyncRunning(Projection[AsyncReadModelTransaction]):
    """`Running` for the async runner: the same SQL, awaited."""

    name = "running"

    async def setup(self, tx: AsyncReadModelTransaction) -> None:
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS running (position BIGINT PRIMARY KEY,"
            " account TEXT NOT NULL, balance BIGINT NOT NULL CHECK (balance >= 0))"
        )

    async def reset(self, tx: AsyncReadModelTransaction) -> None:
        await tx.execute("DELETE FROM running")

    @handles
    async def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: AsyncReadModelTransaction
    ) -> None:
        [(last,)] = await tx.query(
            "SELECT coalesce(max(balance), 0) FROM running WHERE account = ?"
            " AND position = (SELECT max(position) FROM running WHERE account = ?)",
            (event.account, event.account),
        )
        assert isinstance(last, int)
        await tx.execute(
            "INSERT INTO running (position, account, balance) VALUES (?, ?, ?)",
            (envelope.position, event.account, last + event.amount),
        )


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_the_async_runner_batches_the_same_way(name: str, tmp_path: Path) -> None:
    with backend(name, tmp_path) as env:
        _async_batches(env)


def _async_batches(env: Backend) -> None:
    amounts = [(f"a{i % 3}", i) for i in range(1, 40)] + [("a0", -1000)]

    async def main() -> tuple[list[tuple[object, ...]], int]:
        store = env.open(True)
        appended = await store.append("Account-1", [deposit(a, n) for a, n in amounts])
        runner = AsyncProjectionRunner(
            store, [AsyncRunning()], batch_size=25, poll_interval=0.05, lease=2.0, retry_waits=False
        )
        async with runner.running():
            with pytest.raises(ProjectionStopped):
                await runner.wait_for("running", appended.positions[-1], timeout=30)
        [status] = await runner.status()
        async with store.transaction() as tx:
            rows = await tx.query("SELECT account, balance FROM running ORDER BY position")
        await store.aclose()
        assert status.failed_position is not None
        return rows, appended.positions.index(status.failed_position)

    rows, failed = asyncio.run(main())
    totals: dict[str, int] = {}
    want = []
    for account, n in amounts[:-1]:
        totals[account] = totals.get(account, 0) + n
        want.append((account, totals[account]))
    assert (rows, failed) == (want, len(amounts) - 1)
