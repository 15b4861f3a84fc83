"""The relay's span per message, with a publisher of the application's own (no broker needed)."""

from __future__ import annotations

import json

import anyio
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from tests.observability.conftest import Telemetry
from tests.observability.test_across_a_broker import Place, shop
from tests.observability.test_tracing import named, parent_id, span_id
from tests.transports.app import CODEC
from tidings import AsyncMemoryStore
from tidings.observability import instrument
from tidings.projections import AsyncProjectionRunner
from tidings.transports import BrokerMessage
from tidings.transports.relay import OutboxRelay


class Pigeons:
    """Carries what it is given; says which broker it is, as a publisher of one's own may."""

    messaging_system = "pigeons"

    def __init__(self) -> None:
        self.carried: list[BrokerMessage] = []

    async def publish(self, message: BrokerMessage) -> None:
        self.carried.append(message)

    async def aclose(self) -> None:
        pass


def test_a_relayed_message_is_published_under_a_child_of_its_append(telemetry: Telemetry) -> None:
    pigeons = Pigeons()

    async def scenario() -> str:
        store = AsyncMemoryStore()
        instrument(tracer_provider=telemetry.tracer_provider)
        await shop(store).handle(Place("o-1"))
        relay = OutboxRelay(pigeons)
        runner = AsyncProjectionRunner(store, [relay], codec=CODEC, poll_interval=0.05)
        async with runner.running():
            await runner.wait_for(relay.name, 1, timeout=10)
        [stored] = await store.read_all()
        return stored.headers.decode()

    stored_headers = json.loads(anyio.run(scenario))
    append = named(telemetry, "send Order-o-1")
    publish = named(telemetry, "publish Order.shop.OrderPlaced")
    assert publish.kind is SpanKind.PRODUCER
    assert parent_id(publish) == span_id(append)
    assert publish.attributes is not None
    assert publish.attributes["messaging.system"] == "pigeons"
    assert publish.attributes["messaging.operation.name"] == "publish"
    [message] = pigeons.carried
    # The message carries the publication's context; the log keeps the append's.
    carried = json.loads(message.headers["tidings-headers"])
    sent_from = trace.get_current_span(propagate.extract(carried)).get_span_context()
    kept_from = trace.get_current_span(propagate.extract(stored_headers)).get_span_context()
    assert sent_from.span_id == span_id(publish)
    assert kept_from.span_id == span_id(append)
