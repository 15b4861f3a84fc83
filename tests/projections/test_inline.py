"""Inline projections on every backend: applied by the unit of work, committed with the events."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import (
    Backend,
    Deposited,
    Ledger,
    MemoryLedger,
    backend,
)
from tests.store.readable import wait_readable
from tidings import (
    AsyncUnitOfWork,
    ConcurrencyError,
    ConfigurationError,
    Envelope,
    EventSourced,
    InlineProjectionFailed,
    UnitOfWork,
    applies,
)
from tidings.projections import (
    Projection,
    ProjectionRunner,
    ProjectionState,
    ProjectionStopped,
    handles,
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


@pytest.fixture(params=["sqlite", "postgres"])
def sql_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


class Account(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(Deposited(self.id, amount))

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount


class Till(Account):
    """Deposits of another category of streams."""

    category = "Till"


class Book(MemoryLedger):
    """The ledger in memory as an inline projection: there it commits with the store's lock."""

    transactional = True


class Failing(Ledger):
    """The ledger, failing on deposits to the account `bad`."""

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        if event.account == "bad":
            raise RuntimeError("cannot book to bad")
        return super().deposited(event, envelope, tx)


class FailingBook(Book):
    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: object) -> None:
        if event.account == "bad":
            raise RuntimeError("cannot book to bad")
        super().deposited(event, envelope, tx)


def ledger_of(env: Backend, failing: bool = False) -> Projection[object]:
    if env.name == "memory":
        return FailingBook() if failing else Book()
    if failing:
        return Failing(env.qualify("ledger"))
    return env.ledger()


def deposit(uow: UnitOfWork, *deposits: tuple[str, int], kind: type[Account] = Account) -> None:
    with uow:
        met: dict[str, Account] = {}
        for account, amount in deposits:
            found = met.get(account) or uow.repository(kind).get(account)
            if found is None:
                found = kind(account)
                uow.repository(kind).add(found)
            met[account] = found
            found.deposit(amount)
        uow.commit()


async def deposit_async(uow: AsyncUnitOfWork, *deposits: tuple[str, int]) -> None:
    async with uow:
        repository = uow.repository(Account)
        met: dict[str, Account] = {}
        for account, amount in deposits:
            found = met.get(account) or await repository.get(account)
            if found is None:
                found = Account(account)
                await repository.add(found)
            met[account] = found
            found.deposit(amount)
        await uow.commit()


def last_position(store: Any) -> int:
    """The last position committed: `head_position` lags while other sessions' transactions run."""
    streams = store.list_streams(limit=1000)
    return max(
        (store.read_stream(s.name, backwards=True, limit=1)[0].position for s in streams), default=0
    )


def checkpoint(store: Any, ledger: Projection[object]) -> tuple[ProjectionState, int]:
    [status] = ProjectionRunner(store, [ledger]).status()
    return status.state, status.position


def test_the_read_model_is_up_to_date_when_commit_returns(env: Backend) -> None:
    store = env.open(False)
    ledger = ledger_of(env)
    for i in range(30):
        deposit(UnitOfWork(store, inline=[ledger]), (f"a{i % 3}", i), ("b", 1))
        balances = env.read(ledger)
        assert balances[f"a{i % 3}"][1] == i // 3 + 1
        assert balances["b"] == (i + 1, i + 1)
    assert checkpoint(store, ledger) == (ProjectionState.RUNNING, last_position(store))
    store.close()


def test_handlers_get_the_envelope_with_its_log_position(sql_env: Backend) -> None:
    store = sql_env.open(False)
    ledger = sql_env.ledger()
    deposit(UnitOfWork(store, inline=[ledger]), ("a", 1), ("b", 2), ("a", 3))
    records = sorted(
        (r for stream in ("Account-a", "Account-b") for r in store.read_stream(stream)),
        key=lambda record: record.position,
    )
    import sqlite3

    import psycopg

    table = sql_env.qualify("ledger_entries")
    query = f"SELECT event_id, position FROM {table} ORDER BY position"
    if sql_env.name == "sqlite":
        with sqlite3.connect(sql_env.url.removeprefix("sqlite:///")) as connection:
            rows = connection.execute(query).fetchall()
    else:
        with psycopg.connect(sql_env.url.partition("?")[0]) as connection:
            rows = connection.execute(query).fetchall()
    assert [(str(r.event_id), r.position) for r in records] == [(e, int(p)) for e, p in rows]
    store.close()


def test_the_async_unit_of_work_gives_the_same_read_model_at_once(env: Backend) -> None:
    async def main() -> list[dict[str, tuple[int, int]]]:
        store = env.open(True)
        ledger = ledger_of(env)
        seen = []
        for i in range(10):
            await deposit_async(AsyncUnitOfWork(store, inline=[ledger]), ("a", i), ("b", 1))
            seen.append(env.read(ledger))
        await store.aclose()
        return seen

    seen = asyncio.run(main())
    assert seen == [{"a": (sum(range(i + 1)), i + 1), "b": (i + 1, i + 1)} for i in range(10)]


def test_a_failing_handler_keeps_neither_events_nor_rows(sql_env: Backend) -> None:
    env = sql_env
    store = env.open(False)
    ledger = ledger_of(env, failing=True)
    deposit(UnitOfWork(store, inline=[ledger]), ("good", 5))
    before = env.read(ledger)
    head = last_position(store)
    with pytest.raises(InlineProjectionFailed) as raised:
        deposit(UnitOfWork(store, inline=[ledger]), ("good", 1), ("bad", 2))
    assert raised.value.name == "ledger"
    assert raised.value.event_type == Deposited.__event_type__
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "inline projection 'ledger'" in str(raised.value)
    assert last_position(store) == head
    assert store.stream_version("Account-bad") is None
    assert store.stream_version("Account-good") == 1
    assert env.read(ledger) == before == {"good": (5, 1)}
    assert checkpoint(store, ledger) == (ProjectionState.RUNNING, head)
    store.close()


def test_a_failing_async_handler_keeps_neither_events_nor_rows(sql_env: Backend) -> None:
    env = sql_env

    async def main() -> tuple[int, int | None]:
        store = env.open(True)
        ledger = ledger_of(env, failing=True)
        with pytest.raises(InlineProjectionFailed):
            await deposit_async(AsyncUnitOfWork(store, inline=[ledger]), ("good", 1), ("bad", 2))
        result = (
            len(await store.list_streams()),
            await store.stream_version("Account-good"),
        )
        assert env.read(ledger) == {}
        await store.aclose()
        return result

    assert asyncio.run(main()) == (0, None)


def test_a_rebuild_by_the_runner_gives_the_read_model_inline_commits_made(env: Backend) -> None:
    store = env.open(False)
    ledger = ledger_of(env)
    for i in range(20):
        deposit(UnitOfWork(store, inline=[ledger]), (f"a{i % 4}", i))
    built = env.read(ledger)
    wait_readable(store, last_position(store))
    ProjectionRunner(store, [ledger]).rebuild("ledger")
    assert env.read(ledger) == built
    deposit(UnitOfWork(store, inline=[ledger]), ("a0", 100))
    assert env.read(ledger)["a0"] == (built["a0"][0] + 100, built["a0"][1] + 1)
    assert checkpoint(store, ledger) == (ProjectionState.RUNNING, last_position(store))
    store.close()


def test_commits_are_refused_while_the_projection_is_paused(env: Backend) -> None:
    store = env.open(False)
    ledger = ledger_of(env)
    deposit(UnitOfWork(store, inline=[ledger]), ("a", 1))
    head = last_position(store)
    runner = ProjectionRunner(store, [ledger])
    runner.pause("ledger")
    with pytest.raises(ProjectionStopped) as raised:
        deposit(UnitOfWork(store, inline=[ledger]), ("a", 2))
    assert (raised.value.name, raised.value.state) == ("ledger", ProjectionState.PAUSED)
    assert last_position(store) == head
    runner.resume("ledger")
    deposit(UnitOfWork(store, inline=[ledger]), ("a", 3))
    assert env.read(ledger) == {"a": (4, 2)}
    store.close()


def test_commits_of_events_it_does_not_read_need_no_running_projection(env: Backend) -> None:
    store = env.open(False)
    ledger = ledger_of(env)
    only_b = type(ledger)(*([] if env.name == "memory" else [env.qualify("ledger")]))
    only_b.categories = ("Till",)  # type: ignore[misc]
    deposit(UnitOfWork(store, inline=[only_b]), ("t", 1), kind=Till)
    ProjectionRunner(store, [only_b]).pause("ledger")
    deposit(UnitOfWork(store, inline=[only_b]), ("a", 1))
    assert env.read(only_b) == {"t": (1, 1)}
    with pytest.raises(ProjectionStopped):
        deposit(UnitOfWork(store, inline=[only_b]), ("t", 1), kind=Till)
    store.close()


def test_writers_in_threads_give_exact_counts(sql_env: Backend) -> None:
    store = sql_env.open(False)
    ledger = sql_env.ledger()
    deposit(UnitOfWork(store, inline=[ledger]), ("shared", 0))
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for i in range(15):
                deposit(
                    UnitOfWork(store, inline=[ledger]), (f"w{writer}-{i}", 1), (f"w{writer}", 1)
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    balances = sql_env.read(ledger)
    assert [balances[f"w{n}"] for n in range(6)] == [(15, 15)] * 6
    assert len(balances) == 1 + 6 + 90
    assert checkpoint(store, ledger) == (ProjectionState.RUNNING, last_position(store))
    store.close()


def test_in_memory_a_failing_handler_keeps_no_events(tmp_path: Path) -> None:
    # A read model in process memory is not rolled back: only the events are kept or not.
    with backend("memory", tmp_path) as env:
        store = env.open(False)
        ledger = ledger_of(env, failing=True)
        with pytest.raises(InlineProjectionFailed):
            deposit(UnitOfWork(store, inline=[ledger]), ("bad", 2))
        assert store.stream_version("Account-bad") is None
        assert env.read(ledger) == {}


def test_a_projection_that_is_not_transactional_is_refused(env: Backend) -> None:
    store = env.open(False)
    with pytest.raises(ConfigurationError, match="not transactional"):
        UnitOfWork(store, inline=[MemoryLedger()])
    store.close()


def test_a_rebuild_refuses_commits_and_waits_for_events_an_open_transaction_holds_back(
    tmp_path: Path,
) -> None:
    import psycopg

    from tests.services import postgres_dsn

    with backend("postgres", tmp_path) as env:
        store = env.open(False)
        ledger = env.ledger()
        deposit(UnitOfWork(store, inline=[ledger]), ("a", 1))
        done = threading.Event()

        def rebuild() -> None:
            ProjectionRunner(store, [ledger], poll_interval=0.05).rebuild("ledger")
            done.set()

        with psycopg.connect(postgres_dsn()) as holder:
            # An open transaction with an id: readers see nothing committed after it.
            holder.execute("SELECT pg_current_xact_id()")
            deposit(UnitOfWork(store, inline=[ledger]), ("a", 2))
            built = env.read(ledger)
            rebuilding = threading.Thread(target=rebuild)
            rebuilding.start()
            assert not done.wait(0.5), "the rebuild gave the read model back without a deposit"
            with pytest.raises(ProjectionStopped) as refused:
                deposit(UnitOfWork(store, inline=[ledger]), ("a", 8))
            assert refused.value.state is ProjectionState.REBUILDING
            holder.rollback()
        rebuilding.join(timeout=10)
        assert done.is_set()
        assert env.read(ledger) == built == {"a": (3, 2)}
        deposit(UnitOfWork(store, inline=[ledger]), ("a", 4))
        assert env.read(ledger) == {"a": (7, 3)}
        store.close()


class Slow(Ledger):
    """The ledger, whose first deposit to `slow` holds its commit until `entered` is waited on."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.entered = threading.Event()

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        if event.account == "slow" and not self.entered.is_set():
            self.entered.set()
            time.sleep(0.5)  # the other commit starts, and waits for the checkpoint row
        return super().deposited(event, envelope, tx)


def test_under_repeatable_read_a_commit_that_waited_for_the_row_is_a_concurrency_error(
    tmp_path: Path,
) -> None:
    from tests.services import postgres_dsn
    from tidings.store.postgres import PostgresStore

    with backend("postgres", tmp_path) as env:
        setting = "options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
        schema = env.qualify("x").partition(".")[0]
        store = PostgresStore(f"{postgres_dsn()}?{setting}", schema=schema)
        ledger = Slow(env.qualify("ledger"))
        deposit(UnitOfWork(store, inline=[ledger]), ("warm", 1))
        raised: list[BaseException] = []

        def first() -> None:
            deposit(UnitOfWork(store, inline=[ledger]), ("slow", 1))

        slow = threading.Thread(target=first)
        slow.start()
        assert ledger.entered.wait(5)
        with pytest.raises(ConcurrencyError) as raised_here:
            deposit(UnitOfWork(store, inline=[ledger]), ("quick", 1))
        raised.append(raised_here.value)
        slow.join(timeout=10)
        deposit(UnitOfWork(store, inline=[ledger]), ("quick", 1))  # the retry
        assert env.read(ledger) == {"warm": (1, 1), "slow": (1, 1), "quick": (1, 1)}
        store.close()
