"""One trace from a command, through the outbox relay and NATS, to the consumer's handler."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.observability.conftest import Telemetry
from tests.transports.app import CODEC, OrderPlaced
from tests.transports.billing import billed, billing_bus, prepare
from tests.transports.brokers import nats_connect, unique_namespace
from tidings import (
    AsyncEventStore,
    AsyncMessageBus,
    AsyncUnitOfWork,
    Command,
    EventSourced,
    PerCall,
    Router,
    applies,
)
from tidings.observability import instrument
from tidings.projections import AsyncProjectionRunner
from tidings.store.urls import open_async_store
from tidings.transports.consumer import AsyncBrokerConsumer
from tidings.transports.inbox import AsyncInbox
from tidings.transports.relay import OutboxRelay

pytestmark = pytest.mark.brokers


class Place(Command):
    def __init__(self, order: str) -> None:
        self.order = order


class Order(EventSourced):
    @applies
    def _placed(self, event: OrderPlaced) -> None:
        pass


def shop(store: AsyncEventStore) -> AsyncMessageBus:
    router = Router()

    @router.handler
    async def place(command: Place, uow: AsyncUnitOfWork) -> None:
        async with uow:
            order = Order(command.order)
            order.record(OrderPlaced(command.order, 3))
            await uow.repository(Order).add(order)
            await uow.commit()

    return AsyncMessageBus(
        router, dependencies={"uow": PerCall(lambda: AsyncUnitOfWork(store, codec=CODEC))}
    )


def test_the_consumers_handler_is_a_child_of_the_producers_append(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    connect = nats_connect()

    async def scenario() -> None:
        producer = open_async_store(f"sqlite:///{tmp_path / 'shop.db'}")
        consumer_store = open_async_store(f"sqlite:///{tmp_path / 'billing.db'}")
        await prepare(consumer_store)
        inbox = AsyncInbox(consumer_store, "billing")
        await inbox.prepare()
        billing = billing_bus(consumer_store, inbox)
        bus = shop(producer)
        instrument(bus, billing, tracer_provider=telemetry.tracer_provider)
        async with connect(unique_namespace()) as binding:
            receiver = await binding.receiver("billing")
            await bus.handle(Place("o-1"))
            relay = OutboxRelay(binding)
            runner = AsyncProjectionRunner(producer, [relay], codec=CODEC, poll_interval=0.05)
            async with runner.running():
                await runner.wait_for(relay.name, 1, timeout=20)
            consumer = AsyncBrokerConsumer(receiver, billing, inbox, codec=CODEC, wait=0.2)
            with anyio.fail_after(20):
                while not await billed(consumer_store):
                    await consumer.run_once()
            await receiver.aclose()
        await producer.aclose()
        await consumer_store.aclose()

    anyio.run(scenario)
    spans = telemetry.spans.get_finished_spans()
    [append] = [s for s in spans if s.name == "send Order-o-1"]
    [relayed] = [s for s in spans if s.name == "process outbox"]
    # The event handled by the shop's own bus after the command, and by the consumer's.
    handled = [s for s in spans if s.name == "process OrderPlaced"]
    assert len(handled) == 2 and append.context is not None
    for span in handled:
        assert span.parent is not None and span.parent.span_id == append.context.span_id
        assert span.context is not None and span.context.trace_id == append.context.trace_id
    assert [link.context.span_id for link in relayed.links] == [append.context.span_id]
