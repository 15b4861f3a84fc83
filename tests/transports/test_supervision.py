"""The supervision services: connecting again with bounded backoff, stopping, refusing a wrong app.

In one process, with a connection function whose connect fails while
`down` says so: the broker "away". The CLI tests run the same services
against real brokers that are killed and started again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tidings import (
    AsyncConsumerService,
    AsyncEventStore,
    AsyncMemoryStore,
    AsyncRelayService,
    Backoff,
    BrokerMessage,
    OutboxRelay,
)
from tidings.errors import ConfigurationError


class Broker:
    """Whether connecting works, and a consumer that runs until stopped or the broker goes."""

    def __init__(self, failures: int, awaited: int = 1) -> None:
        self.failures = failures
        self.connects = 0
        self.closed = 0
        self.awaited = awaited
        self.reached = anyio.Event()
        """Set once `awaited` connections were tried."""

    @asynccontextmanager
    async def connect(self, store: Any) -> AsyncIterator[Consumer]:
        self.connects += 1
        if self.connects >= self.awaited:
            self.reached.set()
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("connection refused")
        try:
            yield Consumer()
        finally:
            self.closed += 1


class Consumer:
    name = "billing"

    def __init__(self) -> None:
        self.stopped = anyio.Event()

    async def run(self) -> None:
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_backoff_doubles_up_to_its_bound() -> None:
    backoff = Backoff(first=0.5, most=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert Backoff().delay(10_000) == 30.0
    with pytest.raises(ValueError, match="first"):
        Backoff(first=2.0, most=1.0)


def test_the_consumer_connects_again_after_each_failure_logging_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker(failures=3, awaited=4)
    service = AsyncConsumerService(
        AsyncMemoryStore(), broker.connect, backoff=Backoff(first=0.1, most=0.2)
    )

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(service.run)
            with anyio.fail_after(5):
                await broker.reached.wait()
            await anyio.sleep(0.05)  # connected, and running
            service.stop()

    with caplog.at_level(logging.INFO, logger="tidings.transports"):
        anyio.run(main)
    lines = [r.getMessage() for r in caplog.records if "connecting again" in r.getMessage()]
    assert lines == [
        "consumer: ConnectionRefusedError: connection refused; connecting again in 0.1 s (retry 1)",
        "consumer: ConnectionRefusedError: connection refused; connecting again in 0.2 s (retry 2)",
        "consumer: ConnectionRefusedError: connection refused; connecting again in 0.2 s (retry 3)",
    ]
    assert "consumer billing: connected" in caplog.messages
    assert (broker.connects, broker.closed, service.retries) == (4, 1, 3)


def test_stop_during_a_long_backoff_returns_at_once() -> None:
    broker = Broker(failures=10**6)
    service = AsyncConsumerService(AsyncMemoryStore(), broker.connect, backoff=Backoff(60, 60))

    async def main() -> float:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(service.run)
            await broker.reached.wait()
            started = time.monotonic()
            service.stop()
        return time.monotonic() - started

    assert anyio.run(main) < 1.0


class Publisher:
    """A broker the relay publishes into that keeps nothing."""

    async def publish(self, message: BrokerMessage) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["relay", "consumer"])
def test_a_service_stopped_before_it_runs_returns_at_once_without_connecting(kind: str) -> None:
    """A stop that comes before `run` begins (the worker stopped while starting) is not lost."""
    broker = Broker(failures=0)

    @asynccontextmanager
    async def relay(store: AsyncEventStore) -> AsyncIterator[OutboxRelay]:
        broker.connects += 1
        yield OutboxRelay(Publisher())

    store = AsyncMemoryStore()
    service: AsyncRelayService | AsyncConsumerService = (
        AsyncRelayService(store, relay, poll_interval=0.05)
        if kind == "relay"
        else AsyncConsumerService(store, broker.connect)
    )
    service.stop()

    async def main() -> None:
        with anyio.fail_after(5):
            await service.run()

    anyio.run(main)
    assert broker.connects == 0


def test_a_connection_giving_no_relay_is_a_configuration_error_not_retried() -> None:
    broker = Broker(failures=0)
    service = AsyncRelayService(AsyncMemoryStore(), broker.connect)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="gave Consumer"):
        anyio.run(service.run)
    assert broker.connects == 1
