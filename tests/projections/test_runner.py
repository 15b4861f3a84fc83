"""The projection runner on every backend: catch-up, live, failures, rebuilds, read your writes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

from tests.projections.ledger import (
    Backend,
    Deposited,
    Ledger,
    _run,
    backend,
    deposit,
    note,
)
from tests.runner_options import RunnerOptions
from tests.store.readable import readable, wait_readable
from tidings import Envelope
from tidings.projections import (
    AsyncProjectionRunner,
    OnFailure,
    PositionBeyondHead,
    Projection,
    ProjectionRunner,
    ProjectionState,
    ProjectionStopped,
    ProjectionTimeout,
    handles,
)
from tidings.retry import Retry
from tidings.store import ReadModelTransaction

FAST: RunnerOptions = {"poll_interval": 0.05, "lease": 2.0, "retry_waits": False}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


@pytest.fixture(params=["sqlite", "postgres"])
def sql_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def expected(deposits: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    model: dict[str, tuple[int, int]] = {}
    for account, amount in deposits:
        balance, entries = model.get(account, (0, 0))
        model[account] = (balance + amount, entries + 1)
    return model


def test_a_projection_catches_up_in_batches_then_follows_live(env: Backend) -> None:
    store = env.open(False)
    ledger = env.ledger()
    made = [(f"a{i % 3}", i) for i in range(250)]
    for start in range(0, 250, 50):
        store.append("Account-x", [deposit(a, n) for a, n in made[start : start + 50]])
    store.append("Note-1", [note()])
    runner = ProjectionRunner(store, [ledger], batch_size=40, **FAST)
    with runner.running():
        result = store.append("Account-y", [deposit("a9", 7)])
        runner.wait_for("ledger", result.positions[-1])
        assert env.read(ledger) == expected([*made, ("a9", 7)])
        last = store.append("Note-2", [note()])
        runner.wait_for("ledger", last.positions[-1], timeout=10)
    [status] = runner.status()
    assert status.state is ProjectionState.STOPPED
    assert status.position == result.positions[-1]
    assert status.lag == 0
    assert status.head == last.positions[-1]
    store.close()


def test_the_async_runner_gives_the_same_read_model(env: Backend) -> None:
    async def main() -> dict[str, tuple[int, int]]:
        store = env.open(True)
        ledger = env.ledger()
        for i in range(30):
            await store.append(f"Account-{i % 4}", [deposit(f"a{i % 4}", i)])
        runner = AsyncProjectionRunner(store, [ledger], batch_size=7, **FAST)
        async with runner.running():
            result = await store.append("Account-z", [deposit("a1", 100)])
            await runner.wait_for("ledger", result.positions[-1])
        await store.aclose()
        return env.read(ledger)

    made = [(f"a{i % 4}", i) for i in range(30)] + [("a1", 100)]
    assert asyncio.run(main()) == expected(made)


def test_a_rebuild_replays_to_the_same_read_model_with_progress(env: Backend) -> None:
    store = env.open(False)
    ledger = env.ledger()
    for i in range(120):
        last = store.append(f"Account-{i % 5}", [deposit(f"a{i % 5}", i)]).positions[-1]
    runner = ProjectionRunner(store, [ledger], batch_size=25, **FAST)
    with runner.running():
        runner.wait_for("ledger", last)
        incremental = env.read(ledger)
        reports: list[tuple[int, int]] = []
        runner.rebuild("ledger", lambda position, head: reports.append((position, head)))
        assert env.read(ledger) == incremental == expected([(f"a{i % 5}", i) for i in range(120)])
    positions = [position for position, _ in reports]
    assert positions == sorted(positions)
    assert reports[-1][0] == reports[-1][1] == last
    assert runner.status()[0].state is ProjectionState.STOPPED
    store.close()


def test_a_rebuild_without_a_running_runner_replays_here(sql_env: Backend) -> None:
    store = sql_env.open(False)
    ledger = sql_env.ledger()
    for _ in range(40):
        last = store.append("Account-1", [deposit("a", 1)]).positions[-1]
    wait_readable(store, last)
    runner = ProjectionRunner(store, [ledger], batch_size=15, **FAST)
    runner.rebuild("ledger")
    assert sql_env.read(ledger) == {"a": (40, 40)}
    [status] = runner.status()
    assert (status.state, status.lag) == (ProjectionState.STOPPED, 0)
    store.close()


class Flaky(Ledger):
    """Fails on deposits to `bad` accounts while `broken` is set."""

    retry = Retry(attempts=3, first_delay=0)
    broken = threading.Event()

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        if event.account == "bad" and self.broken.is_set():
            raise RuntimeError("cannot book to bad")
        return super().deposited(event, envelope, tx)


class FlakyDeadLetters(Flaky):
    on_failure = OnFailure.DEAD_LETTER


class NonNegative(Projection):
    """One row per deposit, in a table that refuses negative amounts: the database fails it."""

    name = "non_negative"
    retry = Retry(attempts=2, first_delay=0)

    def __init__(self, table: str) -> None:
        self.table = table

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (position BIGINT PRIMARY KEY,"
            " amount INTEGER NOT NULL CHECK (amount >= 0))"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute(f"DELETE FROM {self.table}")

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: ReadModelTransaction
    ) -> None:
        tx.execute(
            f"INSERT INTO {self.table} (position, amount) VALUES (?, ?)",
            (envelope.position, event.amount),
        )


def test_a_statement_failing_mid_batch_parks_at_its_own_event(env: Backend) -> None:
    # On PostgreSQL a batch's statements go in one round trip, so the failure is read
    # back with the batch: the runner must still park at the event that caused it. On
    # memory the checkpoint must roll back with the batch's statements, as in SQL.
    store = env.open(False)
    amounts = [1, 2, 3, -1, 4, 5]
    appended = store.append("Account-1", [deposit("a", amount) for amount in amounts])
    wait_readable(store, appended.positions[-1])
    table = env.qualify("non_negative")
    runner = ProjectionRunner(store, [NonNegative(table)], batch_size=100, **FAST)
    with runner.running(), pytest.raises(ProjectionStopped, match="non_negative"):
        runner.wait_for("non_negative", appended.positions[-1], timeout=30)
    [status] = runner.status()
    assert status.state is ProjectionState.PARKED
    assert status.failed_position == appended.positions[3]
    assert status.position == appended.positions[2]
    with store.transaction() as tx:
        rows = tx.query(f"SELECT amount FROM {table} ORDER BY position")
    assert [row[0] for row in rows] == [1, 2, 3]
    store.close()


def test_waiting_for_a_position_beyond_the_head_is_refused_at_once(env: Backend) -> None:
    store = env.open(False)
    appended = store.append("Account-1", [deposit("a", 1)])
    runner = ProjectionRunner(store, [env.ledger()], **FAST)
    began = time.monotonic()
    with pytest.raises(PositionBeyondHead, match="beyond the log's head") as refused:
        runner.wait_for("ledger", appended.positions[-1] + 1, timeout=30)
    assert time.monotonic() - began < 5
    assert (refused.value.position, refused.value.head) == (
        appended.positions[-1] + 1,
        appended.positions[-1],
    )
    store.close()


def test_the_async_runner_refuses_a_position_beyond_the_head_at_once(env: Backend) -> None:
    async def main() -> None:
        store = env.open(True)
        runner = AsyncProjectionRunner(store, [env.ledger()], **FAST)
        with pytest.raises(PositionBeyondHead):
            await runner.wait_for("ledger", 10**12, timeout=30)
        await store.aclose()

    asyncio.run(main())


def test_a_failing_projection_is_parked_while_others_run_and_resumes(sql_env: Backend) -> None:
    store = sql_env.open(False)
    flaky = Flaky(prefix=sql_env.qualify("flaky"), name="flaky")
    ledger = sql_env.ledger()
    Flaky.broken.set()
    runner = ProjectionRunner(store, [flaky, ledger], **FAST)
    with runner.running():
        store.append("Account-1", [deposit("good", 1)])
        bad = store.append("Account-2", [deposit("bad", 5)])
        last = store.append("Account-1", [deposit("good", 2)])
        runner.wait_for("ledger", last.positions[-1])
        began = time.monotonic()
        with pytest.raises(ProjectionStopped, match="'flaky' is parked: RuntimeError"):
            runner.wait_for("flaky", last.positions[-1], timeout=30)
        assert time.monotonic() - began < 10, "a wait on a parked projection ran on"
        parked = {s.name: s for s in runner.status()}["flaky"]
        assert parked.state is ProjectionState.PARKED
        assert parked.failed_position == bad.positions[0]
        assert parked.error == "RuntimeError: cannot book to bad"
        assert sql_env.read(flaky) == {"good": (1, 1)}
        Flaky.broken.clear()
        runner.resume("flaky")
        runner.wait_for("flaky", last.positions[-1])
    assert sql_env.read(flaky) == sql_env.read(ledger) == {"good": (3, 2), "bad": (5, 1)}
    assert {s.name: s.state for s in runner.status()}["flaky"] is ProjectionState.STOPPED
    store.close()


def test_the_dead_letter_policy_moves_past_a_failing_event(sql_env: Backend) -> None:
    store = sql_env.open(False)
    projection = FlakyDeadLetters(prefix=sql_env.qualify("dl"), name="dl")
    Flaky.broken.set()
    try:
        runner = ProjectionRunner(store, [projection], **FAST)
        with runner.running():
            bad = store.append("Account-2", [deposit("bad", 5)])
            last = store.append("Account-1", [deposit("good", 2)])
            runner.wait_for("dl", last.positions[-1])
        [letter] = runner.letters_of("dl")
        assert letter.handler == "projection:dl"
        assert letter.envelope.position == bad.positions[0]
        assert letter.envelope.message == Deposited("bad", 5)
        assert letter.error == "RuntimeError: cannot book to bad"
        assert (letter.attempts, letter.parked) == (3, False)
        assert "cannot book to bad" in letter.traceback
        assert sql_env.read(projection) == {"good": (2, 1)}
    finally:
        Flaky.broken.clear()
    store.close()


class RetriesOnlyTimeouts(FlakyDeadLetters):
    retry = Retry(attempts=5, first_delay=0, on=(TimeoutError,))


def test_an_error_outside_retry_on_is_not_tried_again(sql_env: Backend) -> None:
    store = sql_env.open(False)
    projection = RetriesOnlyTimeouts(prefix=sql_env.qualify("once"), name="once")
    Flaky.broken.set()
    try:
        runner = ProjectionRunner(store, [projection], **FAST)
        with runner.running():
            store.append("Account-2", [deposit("bad", 5)])
            last = store.append("Account-1", [deposit("good", 2)])
            runner.wait_for("once", last.positions[-1])
        [letter] = runner.letters_of("once")
        assert letter.attempts == 1
    finally:
        Flaky.broken.clear()
    store.close()


def test_pause_and_resume_reach_a_runner_through_the_database(env: Backend) -> None:
    store = env.open(False)
    ledger = env.ledger()
    runner = ProjectionRunner(store, [ledger], **FAST)
    console = ProjectionRunner(store, [env.ledger()], **FAST)  # as the CLI would, elsewhere
    with runner.running():
        first = store.append("Account-1", [deposit("a", 1)])
        runner.wait_for("ledger", first.positions[-1])
        console.pause("ledger")
        assert console.status()[0].state is ProjectionState.PAUSED
        second = store.append("Account-1", [deposit("a", 1)])
        wait_readable(store, second.positions[-1])
        with pytest.raises(ProjectionTimeout) as raised:
            runner.wait_for("ledger", second.positions[-1], timeout=0.3)
        assert raised.value.reached == first.positions[-1]
        assert console.status()[0].lag == 1
        console.resume("ledger")
        runner.wait_for("ledger", second.positions[-1], timeout=10)
    assert env.read(ledger) == {"a": (2, 2)}
    store.close()


def test_read_your_writes_passes_events_the_projection_does_not_read(env: Backend) -> None:
    store = env.open(False)
    runner = ProjectionRunner(store, [env.ledger()], **FAST)
    with runner.running():
        store.append("Account-1", [deposit("a", 1)])
        noted = store.append("Note-1", [note()])
        runner.wait_for("ledger", noted.positions[-1], timeout=10)
    with pytest.raises(LookupError, match="no projection named 'nope'"):
        runner.wait_for("nope", 1)
    store.close()


def test_eight_writers_with_a_projection_running_give_exact_counts(sql_env: Backend) -> None:
    store = sql_env.open(False)
    ledger = sql_env.ledger()
    runner = ProjectionRunner(store, [ledger], batch_size=50, **FAST)
    last: list[int] = []

    def write(writer: int) -> None:
        for i in range(40):
            result = store.append(f"Account-{writer}-{i % 3}", [deposit(f"w{writer}", 1)])
            last.append(result.positions[-1])

    with runner.running():
        threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runner.wait_for("ledger", max(last), timeout=10)
    assert sql_env.read(ledger) == {f"w{w}": (40, 40) for w in range(8)}
    store.close()


def test_a_new_version_is_built_beside_and_swapped_in(sql_env: Backend) -> None:
    store = sql_env.open(False)
    live = sql_env.ledger()
    for i in range(60):
        last = store.append("Account-1", [deposit("a", i)]).positions[-1]
    runner = ProjectionRunner(store, [live], batch_size=10, **FAST)
    with runner.running():
        runner.wait_for("ledger", last)
        before = sql_env.read(live)
        nxt = sql_env.ledger(prefix="ledger_v2")
        swapped: list[dict[str, tuple[int, int]]] = []
        runner.replace(nxt, lambda tx: swapped.append(sql_env.read(live)))
        assert swapped == [before]  # the old one served until the swap
        result = store.append("Account-1", [deposit("a", 1000)])
        runner.wait_for("ledger", result.positions[-1])
        assert runner.projections["ledger"] is nxt
    assert sql_env.read(nxt) == expected([("a", i) for i in range(60)] + [("a", 1000)])
    assert sql_env.read(live) == before
    store.close()


def test_a_paused_projection_stays_paused_after_a_swap_and_after_a_failed_one(
    sql_env: Backend,
) -> None:
    store = sql_env.open(False)
    live = sql_env.ledger()
    last = store.append("Account-1", [deposit("a", 5)]).positions[-1]
    runner = ProjectionRunner(store, [live], batch_size=10, **FAST)
    with runner.running():
        runner.wait_for("ledger", last)
        runner.pause("ledger")

        def broken_swap(tx: object) -> None:
            raise RuntimeError("the swap failed")

        with pytest.raises(RuntimeError, match="the swap failed"):
            runner.replace(sql_env.ledger(prefix="ledger_v2"), broken_swap)
        assert [s.state for s in runner.status()] == [ProjectionState.PAUSED]
        runner.replace(sql_env.ledger(prefix="ledger_v3"), lambda tx: None)
        assert [s.state for s in runner.status()] == [ProjectionState.PAUSED]
    store.close()


def test_two_runners_of_one_projection_take_turns_never_both(sql_env: Backend) -> None:
    store = sql_env.open(False)
    quick: RunnerOptions = {**FAST, "lease": 0.3}
    first = ProjectionRunner(store, [sql_env.ledger()], batch_size=5, **quick)
    second = ProjectionRunner(store, [sql_env.ledger()], batch_size=5, **quick)
    last = 0
    with second.running():
        with first.running():
            for i in range(30):
                last = store.append(f"Account-{i % 2}", [deposit(f"a{i % 2}", 1)]).positions[-1]
            first.wait_for("ledger", last, timeout=10)
        for i in range(30):  # whichever held it, the second runner now runs on alone
            last = store.append(f"Account-{i % 2}", [deposit(f"a{i % 2}", 1)]).positions[-1]
        second.wait_for("ledger", last, timeout=10)
    # Each event was booked once: the entries' primary key would have parked a second booking.
    assert sql_env.read(sql_env.ledger()) == {"a0": (30, 30), "a1": (30, 30)}
    [status] = first.status()
    assert (status.state, status.lag) == (ProjectionState.STOPPED, 0)
    store.close()


def test_the_async_runner_pauses_resumes_rebuilds_and_times_out(env: Backend) -> None:
    async def main() -> None:
        store = env.open(True)
        ledger = env.ledger()
        runner = AsyncProjectionRunner(store, [ledger], batch_size=4, **FAST)
        async with runner.running():
            first = await store.append("Account-1", [deposit("a", 2)])
            await runner.wait_for("ledger", first.positions[-1])
            await runner.pause("ledger")
            second = await store.append("Account-1", [deposit("a", 3)])
            await readable(store, second.positions[-1])
            with pytest.raises(ProjectionTimeout):
                await runner.wait_for("ledger", second.positions[-1], timeout=0.2)
            [paused] = await runner.status()
            assert (paused.state, paused.lag) == (ProjectionState.PAUSED, 1)
            await runner.resume("ledger")
            await runner.wait_for("ledger", second.positions[-1])
            for _ in range(10):
                third = await store.append("Account-2", [deposit("b", 1)])
            await runner.wait_for("ledger", third.positions[-1])
            reports: list[int] = []
            await runner.rebuild("ledger", lambda position, head: reports.append(position))
            assert reports[-1] == third.positions[-1]
        [status] = await runner.status()
        assert (status.state, status.lag) == (ProjectionState.STOPPED, 0)
        await store.aclose()
        assert env.read(ledger) == {"a": (5, 2), "b": (10, 10)}

    asyncio.run(main())


def test_a_rebuild_that_fails_stops_with_the_error(sql_env: Backend) -> None:
    store = sql_env.open(False)
    wait_readable(
        store, store.append("Account-1", [deposit("good", 1), deposit("bad", 1)]).positions[-1]
    )
    flaky = Flaky(prefix=sql_env.qualify("flaky"), name="flaky")
    runner = ProjectionRunner(store, [flaky], **FAST)
    Flaky.broken.set()
    try:
        with pytest.raises(ProjectionStopped, match="'flaky' is parked: RuntimeError"):
            runner.rebuild("flaky")
    finally:
        Flaky.broken.clear()
    [status] = runner.status()
    assert (status.state, status.lag) == (ProjectionState.PARKED, 1)
    store.close()


def test_status_names_the_lease_owner_and_says_stopped_or_stale_when_none_runs(
    env: Backend,
) -> None:
    store = env.open(False)
    ledger = env.ledger()
    last = store.append("Account-1", [deposit("a", 1)]).positions[-1]
    runner = ProjectionRunner(store, [ledger], **FAST)
    [before] = runner.status()
    assert (before.state, before.owner, before.heartbeat_age) == (
        ProjectionState.STOPPED,
        None,
        None,
    )
    with runner.running():
        runner.wait_for("ledger", last)
        [live] = runner.status()
        assert (live.state, live.owner) == (ProjectionState.RUNNING, runner.owner)
        assert live.heartbeat_age is not None and live.heartbeat_age < FAST["lease"]
        time.sleep(1.0)  # idle: the heartbeat goes on (every lease / 3)
        [idle] = runner.status()
        assert idle.heartbeat_age is not None and idle.heartbeat_age < 0.9
    [after] = runner.status()
    assert (after.state, after.owner) == (ProjectionState.STOPPED, None)
    assert after.heartbeat_age is not None
    # A holder that went without giving its lease back: stale once the lease ran out.
    gone = ProjectionRunner(store, [ledger], poll_interval=0.05, lease=0.2)
    assert gone._claim("ledger")
    [held] = runner.status()
    assert (held.state, held.owner) == (ProjectionState.RUNNING, gone.owner)
    time.sleep(0.3)
    [stale] = runner.status()
    assert (stale.state, stale.owner) == (ProjectionState.STALE, gone.owner)
    store.close()


def test_a_projections_table_made_by_an_older_version_gets_its_new_columns(
    tmp_path: Path,
) -> None:
    import sqlite3

    from tidings.store import SQLiteStore

    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    last = store.append("Account-1", [deposit("a", 1)]).positions[-1]
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE tidings_projections (name TEXT PRIMARY KEY,"
            " position BIGINT NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'running',"
            " error TEXT, failed_position BIGINT, owner TEXT, lease_until REAL)"
        )
        connection.execute("INSERT INTO tidings_projections (name, position) VALUES ('ledger', 0)")
    runner = ProjectionRunner(store, [Ledger()], **FAST)
    with runner.running():
        runner.wait_for("ledger", last)
        [status] = runner.status()
        assert (status.state, status.owner) == (ProjectionState.RUNNING, runner.owner)
    store.close()


class SlowLedger(Ledger):
    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        time.sleep(0.002)
        return super().deposited(event, envelope, tx)


def test_a_rebuild_taking_over_a_half_done_replay_reports_its_real_progress(
    tmp_path: Path,
) -> None:
    from tidings.store import SQLiteStore

    store = SQLiteStore(tmp_path / "events.db")
    for _ in range(200):
        last = store.append("Account-1", [deposit("a", 1)]).positions[-1]
    worker = ProjectionRunner(store, [SlowLedger()], batch_size=10, **FAST)
    thread = threading.Thread(target=worker.run)
    thread.start()
    here = ProjectionRunner(store, [SlowLedger()], batch_size=10, **FAST)
    try:
        worker.wait_for("ledger", last, timeout=10)
        reports: list[int] = []

        def report(position: int, head: int) -> None:
            reports.append(position)
            if position > 40:
                worker.stop()  # the runner replaying goes: this rebuild takes the rest over

        here.rebuild("ledger", report)
    finally:
        worker.stop()
        thread.join()
    assert reports[-1] == last
    assert reports == sorted(reports), reports
    store.close()


class BadStatement(Ledger):
    """Its read model statement names a table that does not exist."""

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        return _run(tx, ("INSERT INTO no_such_table (x) VALUES (?)", (1,)))


def test_a_failing_read_model_statement_parks_the_projection_naming_it(
    sql_env: Backend,
) -> None:
    store = sql_env.open(False)
    last = store.append("Account-1", [deposit("a", 1)]).positions[-1]
    runner = ProjectionRunner(store, [BadStatement(name="bad_sql")], **FAST)
    with runner.running():
        with pytest.raises(ProjectionStopped) as stopped:
            runner.wait_for("bad_sql", last, timeout=10)
        [status] = runner.status()
    assert "'bad_sql'" in str(stopped.value) and "no_such_table" in str(stopped.value)
    assert (status.state, status.failed_position) == (ProjectionState.PARKED, last)
    assert status.error is not None and "no_such_table" in status.error
    store.close()
