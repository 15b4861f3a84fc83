"""A worker's services: an outbox relay and a consumer run beside its projections, and stop with it.

The blocking `Worker` runs async services (relays and consumers exist only
as async code) on an event loop of their own thread; `AsyncWorker` runs
them as tasks. Stopping the worker stops each, and the connections they
opened are closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tests.workers.visits import Visited, Visits, visit
from tidings import (
    AsyncConsumerService,
    AsyncEventStore,
    AsyncMemoryStore,
    AsyncRelayService,
    AsyncService,
    AsyncWorker,
    BrokerMessage,
    Envelope,
    MemoryStore,
    OutboxRelay,
    Service,
    Worker,
)
from tidings.projections import Projection, handles
from tidings.scheduling import AsyncScheduler, Scheduler
from tidings.store.urls import open_async_store, open_store


class Broker:
    """Keeps what the relay publishes; counts connections opened and closed."""

    def __init__(self) -> None:
        self.published: list[BrokerMessage] = []
        self.opened = 0
        self.closed = 0

    async def publish(self, message: BrokerMessage) -> None:
        self.published.append(message)

    async def aclose(self) -> None:
        pass

    @asynccontextmanager
    async def relay(self, store: AsyncEventStore) -> AsyncIterator[OutboxRelay]:
        self.opened += 1
        try:
            yield OutboxRelay(self, name="relay-under-worker")
        finally:
            self.closed += 1


class Consumer:
    """Runs until stopped, on the event loop it was started on."""

    name = "orders-in"

    def __init__(self) -> None:
        self.running = threading.Event()
        self.stopped = anyio.Event()

    async def run(self) -> None:
        self.running.set()
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()  # an anyio event: only on its own loop


class Quiet(Projection[object]):
    """A partitioned projection in memory that ignores what it handles."""

    name = "quiet"
    transactional = False
    partitions = 2

    def reset(self, tx: object) -> None:
        pass

    @handles
    def visited(self, event: Visited, envelope: Envelope[Visited], tx: None) -> None:
        pass


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_blocking_worker_runs_a_relay_and_a_consumer_beside_its_projections(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = open_store(url)
    relay_store = open_async_store(url)
    broker, consumer = Broker(), Consumer()

    @asynccontextmanager
    async def consuming(store: AsyncEventStore) -> AsyncIterator[Consumer]:
        yield consumer

    services: list[Service | AsyncService] = [
        AsyncRelayService(relay_store, broker.relay, poll_interval=0.05),
        AsyncConsumerService(relay_store, consuming),
    ]
    worker = Worker(
        store, projections=[Visits("visit_history", 2)], services=services, poll_interval=0.05
    )
    worker.prepare()
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        last = 0
        for n in range(1, 11):
            last = store.append(f"Visit-{n % 3}", [visit(n)]).positions[-1]
        eventually(lambda: len(broker.published) == 10)
        eventually(consumer.running.is_set)
        worker.runner.wait_for("visits", last, timeout=10)
    finally:
        worker.stop()
        running.join(timeout=10)
    assert not running.is_alive()  # every service stopped with the worker
    assert [m.type_name for m in broker.published] == ["tests.workers.Visited"] * 10
    assert (broker.opened, broker.closed) == (1, 1)
    assert consumer.stopped.is_set()
    store.close()
    anyio.run(relay_store.aclose)


def test_a_worker_stopped_before_it_runs_returns_at_once() -> None:
    """A SIGTERM between `prepare` and `run` is not lost: the stop holds."""
    consumer = Consumer()

    @asynccontextmanager
    async def consuming(store: AsyncEventStore) -> AsyncIterator[Consumer]:
        yield consumer

    worker = Worker(
        MemoryStore(),
        projections=[Quiet()],
        services=[AsyncConsumerService(AsyncMemoryStore(), consuming)],
    )
    worker.prepare()
    worker.stop()
    running = threading.Thread(target=worker.run)
    running.start()
    running.join(timeout=5)
    assert not running.is_alive()
    assert worker.held() == []
    assert not consumer.running.is_set()


@pytest.mark.anyio
async def test_an_async_worker_runs_its_services_as_tasks_and_stops_them() -> None:
    store = AsyncMemoryStore()
    broker, consumer = Broker(), Consumer()

    @asynccontextmanager
    async def consuming(store: AsyncEventStore) -> AsyncIterator[Consumer]:
        yield consumer

    worker = AsyncWorker(
        store,
        services=[
            AsyncRelayService(store, broker.relay, poll_interval=0.05),
            AsyncConsumerService(store, consuming),
        ],
        poll_interval=0.05,
    )
    await worker.prepare()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await store.append("Visit-1", [visit(1), visit(2)])
            while len(broker.published) < 2 or not consumer.running.is_set():  # noqa: ASYNC110
                await anyio.sleep(0.02)  # set by the relay's task and the consumer's
            worker.stop()
    assert consumer.stopped.is_set()
    assert (broker.opened, broker.closed) == (1, 1)


def test_schedulers_stopped_before_they_run_return_at_once(tmp_path: Path) -> None:
    """A worker's scheduler, blocking or async: a stop before `run` begins holds."""
    blocking_store = open_store(f"sqlite:///{tmp_path / 'blocking.db'}")
    blocking = Scheduler(blocking_store)
    blocking.stop()
    running = threading.Thread(target=blocking.run, kwargs={"poll_interval": 0.05})
    running.start()
    running.join(timeout=5)
    assert not running.is_alive()
    blocking_store.close()

    async def main() -> None:
        store = open_async_store(f"sqlite:///{tmp_path / 'async.db'}")
        scheduler = AsyncScheduler(store)
        scheduler.stop()
        with anyio.fail_after(5):
            await scheduler.run(poll_interval=0.05)
        await store.aclose()

    anyio.run(main)


@pytest.mark.anyio
async def test_an_async_worker_stopped_as_it_starts_stops_services_not_yet_begun() -> None:
    """The stop reaches the services before their `run` has begun: it holds all the same."""
    store = AsyncMemoryStore()
    broker = Broker()
    relay = AsyncRelayService(store, broker.relay, poll_interval=0.05)
    consumer = AsyncConsumerService(store, lambda store: nothing())
    worker = AsyncWorker(store, services=[relay, consumer], poll_interval=0.05)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await anyio.lowlevel.checkpoint()  # the worker has begun, its services not yet
            worker.stop()
    assert broker.opened == 0


@asynccontextmanager
async def nothing() -> AsyncIterator[Consumer]:
    yield Consumer()
