"""One trace from a request's command, through the relay and a broker, to the consumer's handler."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.observability.conftest import Telemetry
from tests.observability.test_tracing import parent_id, span_id
from tests.transports.app import CODEC, OrderPlaced
from tests.transports.billing import billed, billing_bus, prepare
from tests.transports.brokers import CONNECTS, unique_namespace
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


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [span for span in spans if span.name == name]
    return span


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return parent_id(span) == span_id(parent)


@pytest.mark.parametrize("broker", ["nats", "rabbitmq", "redis"])
def test_one_trace_runs_from_the_request_through_the_relay_to_the_consumers_handler(
    telemetry: Telemetry, tmp_path: Path, broker: str
) -> None:
    connect = CONNECTS[broker]()
    tracer = telemetry.tracer_provider.get_tracer("test")

    async def scenario() -> str:
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
            with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
                await bus.handle(Place("o-1"))
            [stored] = await producer.read_stream("Order-o-1")
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
        return str(stored.event_id)

    event_id = anyio.run(scenario)
    spans = list(telemetry.spans.get_finished_spans())
    request = only(spans, "POST /orders")
    command = only(spans, "process Place")
    append = only(spans, "send Order-o-1")
    batch = only(spans, "process outbox")
    publish = only(spans, "publish Order.shop.OrderPlaced")
    received = only(spans, "process Order.shop.OrderPlaced")
    # The event handled by the shop's own bus after the command, and by the consumer's bus.
    [shop_handled, consumer_handled] = sorted(
        (span for span in spans if span.name == "process OrderPlaced"),
        key=lambda span: span.start_time or 0,
    )
    # The billing handler's unit of work, which commits no event, only its inbox row.
    billing_commits = [s for s in spans if s.name == "send" and child_of(s, consumer_handled)]

    assert child_of(command, request)
    assert child_of(append, command)
    assert child_of(shop_handled, append)
    assert child_of(publish, append)
    assert [link.context.span_id for link in publish.links] == [span_id(batch)]
    assert child_of(received, publish)
    assert child_of(consumer_handled, received)
    assert len(billing_commits) == 1
    one_trace = (request, command, append, publish, received, consumer_handled, *billing_commits)
    assert len({span.context.trace_id for span in one_trace if span.context}) == 1

    assert publish.kind is SpanKind.PRODUCER and received.kind is SpanKind.CONSUMER
    assert publish.attributes is not None and received.attributes is not None
    assert publish.attributes["messaging.system"] == broker
    assert publish.attributes["messaging.destination.name"] == "Order.shop.OrderPlaced"
    assert publish.attributes["messaging.message.id"] == event_id
    assert publish.attributes["messaging.operation.type"] == "send"
    assert received.attributes["messaging.system"] == broker
    assert received.attributes["messaging.destination.name"] == "Order.shop.OrderPlaced"
    assert received.attributes["messaging.message.id"] == event_id
    assert received.attributes["messaging.consumer.group.name"] == "billing"
    # The relay's batch links to the append it relays, as every projection batch does.
    assert [link.context.span_id for link in batch.links] == [span_id(append)]
