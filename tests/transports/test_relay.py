"""The outbox relay publishes exactly the committed events, in log order, from its checkpoint."""

from __future__ import annotations

import asyncio

import pytest

from tests.runner_options import RunnerOptions
from tests.transports.app import CODEC, OpenStore, placed, sent
from tests.transports.brokers import Connect, unique_namespace
from tidings.projections import AsyncProjectionRunner
from tidings.store import AsyncEventStore
from tidings.transports.binding import AsyncReceiver
from tidings.transports.envelopes import decoded
from tidings.transports.relay import OutboxRelay

pytestmark = pytest.mark.brokers

FAST: RunnerOptions = {"poll_interval": 0.05, "lease": 2.0}


async def received(receiver: AsyncReceiver, expected: int) -> list[tuple[str, int | None]]:
    """(message id, position) of the `expected` messages, each acked, and of any more after."""
    got: list[tuple[str, int | None]] = []
    wait = 10.0
    while deliveries := await receiver.fetch(100, wait):
        for delivery in deliveries:
            envelope = decoded(delivery.message, CODEC)
            got.append((str(envelope.message_id), envelope.position))
            await delivery.ack()
        if len(got) >= expected:
            wait = 0.5  # long enough for one more to show, if there is one
    return got


async def relay_until_caught_up(store: AsyncEventStore, relay: OutboxRelay) -> None:
    runner = AsyncProjectionRunner(store, [relay], codec=CODEC, **FAST)
    async with runner.running():
        # Everything committed, whether or not another session's open transaction holds it back yet.
        last = (await store.watermark()).last_position
        await runner.wait_for(relay.name, last, timeout=20)


def test_the_relay_publishes_what_committed_each_stream_in_log_order(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store = open_store()
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("everything")
            await store.append("Order-1", [placed("1"), placed("1", 2)])
            with pytest.raises(RuntimeError):
                async with store.transaction() as tx:
                    await tx.append("Order-2", [placed("rolled back")])
                    raise RuntimeError("never committed")
            await store.append("Invoice-1", [sent("1")])
            await store.append("Order-3", [placed("3")])
            await relay_until_caught_up(store, OutboxRelay(binding))
            records = await store.read_all()
            log = [(str(r.event_id), r.position) for r in records]
            assert len(log) == 4
            got = await received(receiver, len(log))
            # Streams may overtake one another (see test_relay_batching); Order-1's two keep order.
            assert sorted(got) == sorted(log)
            order_1 = [(str(r.event_id), r.position) for r in records if r.stream == "Order-1"]
            assert [m for m in got if m in order_1] == order_1
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_the_envelope_arrives_as_the_log_keeps_it(broker: Connect, open_store: OpenStore) -> None:
    async def scenario() -> None:
        store = open_store()
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("everything")
            await store.append("Order-1", [placed("1", 5)])
            await relay_until_caught_up(store, OutboxRelay(binding))
            (record,) = await store.read_all()
            (delivery,) = await receiver.fetch(1, 5.0)
            assert delivery.message.subject == "Order.shop.OrderPlaced"
            assert decoded(delivery.message, CODEC) == CODEC.envelope(record)
            await delivery.ack()
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_a_relay_of_categories_publishes_only_theirs(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store = open_store()
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("everything")
            await store.append("Order-1", [placed("1")])
            await store.append("Invoice-1", [sent("1")])
            await store.append("Order-2", [placed("2")])
            await relay_until_caught_up(store, OutboxRelay(binding, categories=["Invoice"]))
            invoices = await store.read_all(categories=["Invoice"])
            expected = [(str(r.event_id), r.position) for r in invoices]
            assert await received(receiver, 1) == expected
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_a_restarted_relay_resumes_from_its_checkpoint(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        namespace = unique_namespace()
        async with broker(namespace) as binding:
            receiver = await binding.receiver("everything")
            store = open_store()
            await store.append("Order-1", [placed(str(n)) for n in range(50)])
            await relay_until_caught_up(store, OutboxRelay(binding, name="out"))
            await store.aclose()
            store = open_store()  # another process, as far as the relay can tell
            await store.append("Order-2", [placed(str(n)) for n in range(30)])
            await relay_until_caught_up(store, OutboxRelay(binding, name="out"))
            log = [(str(r.event_id), r.position) for r in await store.read_all()]
            # Each once: the first 50 were not published again.
            assert await received(receiver, len(log)) == log
            await receiver.delete()
            await store.aclose()

    asyncio.run(scenario())
