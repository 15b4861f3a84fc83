"""Async code given to a blocking runner: refused by name when registered, parked when it shows.

The async runner takes plain and async handlers alike; the blocking one
cannot await, so an `async def` is a `ConfigurationError` when the projection
is registered, and a plain `def` returning an awaitable parks the projection
on its event, the awaitable closed without a "never awaited" warning.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path

import pytest

from tests.projections.ledger import Backend, Deposited, backend, deposit
from tidings import (
    AsyncMemoryStore,
    AsyncProjectionRunner,
    ConfigurationError,
    Envelope,
    MemoryStore,
    OnFailure,
    Projection,
    ProjectionRunner,
    ProjectionState,
    ProjectionStopped,
    Retry,
    Router,
    UnitOfWork,
    Worker,
    durable_handlers,
    handles,
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


class AsyncHandled(Projection[object]):
    """Counts deposits in an `async def` handler: for the async runner only."""

    name = "async_handled"
    transactional = False

    def __init__(self) -> None:
        self.accounts: list[str] = []

    def reset(self, tx: object) -> None:
        self.accounts.clear()

    @handles
    async def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: object) -> None:
        await asyncio.sleep(0)
        self.accounts.append(event.account)


class AsyncSetUp(Projection[object]):
    """A plain handler, but a read model made by an `async def setup`."""

    name = "async_set_up"

    async def setup(self, tx: object) -> None:
        await asyncio.sleep(0)

    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: object) -> None:
        pass


class PlainHandled(Projection[object]):
    """Counts deposits in a plain handler: fine on either runner."""

    name = "plain_handled"
    transactional = False

    def __init__(self) -> None:
        self.accounts: list[str] = []

    def reset(self, tx: object) -> None:
        self.accounts.clear()

    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: object) -> None:
        self.accounts.append(event.account)


class ReturnsAwaitable(Projection[object]):
    """A plain handler that returns a coroutine: it shows only when called."""

    name = "returns_awaitable"
    retry = Retry(attempts=3)

    def __init__(self, transactional: bool, on_failure: OnFailure) -> None:
        self.transactional = transactional  # type: ignore[misc]  # per instance, for the test
        self.on_failure = on_failure  # type: ignore[misc]  # per instance, for the test
        self.applied: list[str] = []

    def reset(self, tx: object) -> None:
        self.applied.clear()

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Coroutine[object, object, None]:
        async def apply() -> None:
            self.applied.append(event.account)

        return apply()


def test_the_blocking_runner_refuses_an_async_handler_naming_projection_and_handler() -> None:
    store = MemoryStore()
    with pytest.raises(ConfigurationError) as refused:
        ProjectionRunner(store, [PlainHandled(), AsyncHandled()])
    message = str(refused.value)
    assert "'async_handled'" in message
    assert "AsyncHandled.deposited" in message
    assert "AsyncProjectionRunner" in message


def test_the_blocking_runner_refuses_an_async_setup() -> None:
    with pytest.raises(ConfigurationError, match=r"'async_set_up'.*AsyncSetUp\.setup"):
        ProjectionRunner(MemoryStore(), [AsyncSetUp()])


def test_a_blocking_worker_and_unit_of_work_refuse_an_async_handler() -> None:
    store = MemoryStore()
    with pytest.raises(ConfigurationError, match=r"AsyncHandled\.deposited"):
        Worker(store, projections=[AsyncHandled()])
    with pytest.raises(ConfigurationError, match=r"AsyncSetUp\.setup"):
        UnitOfWork(store, inline=[AsyncSetUp()])


def test_durable_async_handlers_are_refused_by_the_blocking_runner_by_name() -> None:
    router = Router()

    @router.handler
    async def on_deposit(event: Deposited) -> None:
        await asyncio.sleep(0)

    [projection] = durable_handlers(router)
    with pytest.raises(ConfigurationError) as refused:
        ProjectionRunner(MemoryStore(), [projection])
    assert repr(projection.name) in str(refused.value)
    assert "on_deposit" in projection.name


def test_the_async_runner_runs_plain_and_async_handlers_side_by_side() -> None:
    plain, asynchronous = PlainHandled(), AsyncHandled()

    async def main() -> None:
        store = AsyncMemoryStore()
        runner = AsyncProjectionRunner(
            store, [plain, asynchronous], poll_interval=0.05, lease=2.0, retry_waits=False
        )
        async with runner.running():
            result = await store.append("Account-1", [deposit("a"), deposit("b")])
            for name in runner.projections:
                await runner.wait_for(name, result.positions[-1])

    asyncio.run(main())
    assert plain.accounts == ["a", "b"]
    assert asynchronous.accounts == ["a", "b"]


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "at-least-once"])
@pytest.mark.parametrize("on_failure", [OnFailure.PARK, OnFailure.DEAD_LETTER])
def test_a_handler_returning_an_awaitable_parks_the_blocking_runner_projection(
    env: Backend, transactional: bool, on_failure: OnFailure
) -> None:
    store = env.open(False)
    projection = ReturnsAwaitable(transactional, on_failure)
    first = store.append("Account-1", [deposit("a")])
    runner = ProjectionRunner(store, [projection], poll_interval=0.05, lease=2.0, retry_waits=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runner.running():
            with pytest.raises(ProjectionStopped) as stopped:
                runner.wait_for(projection.name, first.positions[-1], timeout=10)
            [status] = runner.status()
        gc.collect()
    assert stopped.value.state is ProjectionState.PARKED
    assert "returns_awaitable" in str(stopped.value)
    assert status.state is ProjectionState.PARKED  # never shown as running past the event
    assert status.position < first.positions[-1]
    assert status.failed_position == first.positions[-1]
    assert status.error is not None
    assert "ReturnsAwaitable.deposited returned an awaitable" in status.error
    assert "AsyncProjectionRunner" in status.error
    assert projection.applied == []
    never_awaited = [w for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []
    store.close()


def test_a_plain_handler_returning_an_awaitable_is_awaited_by_the_async_runner() -> None:
    projection = ReturnsAwaitable(transactional=False, on_failure=OnFailure.PARK)

    async def main() -> None:
        store = AsyncMemoryStore()
        runner = AsyncProjectionRunner(
            store, [projection], poll_interval=0.05, lease=2.0, retry_waits=False
        )
        async with runner.running():
            result = await store.append("Account-1", [deposit("a")])
            await runner.wait_for(projection.name, result.positions[-1])

    asyncio.run(main())
    assert projection.applied == ["a"]
