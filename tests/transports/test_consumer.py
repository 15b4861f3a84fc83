"""The consumer hands each received event to its bus once, dead-letters what it cannot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.transports.app import CODEC, OpenStore, OrderPlaced, store_opener
from tests.transports.billing import billed, billing_bus, prepare
from tests.transports.brokers import Connect, unique_namespace
from tidings import Envelope, Event, Message
from tidings.dead_letters import AsyncSQLDeadLetters, UndecodedEvent
from tidings.store import AsyncEventStore, AsyncMemoryStore
from tidings.transports.binding import AsyncDelivery, AsyncReceiver, BrokerMessage
from tidings.transports.consumer import AsyncBrokerConsumer, letter_handler
from tidings.transports.envelopes import encoded
from tidings.transports.inbox import AsyncInbox

pytestmark = pytest.mark.brokers


def order(name: str, amount: int = 1) -> Envelope[Event]:
    """An order placed, as the producer's log would have stored it."""
    envelope: Envelope[Event] = Envelope.new(OrderPlaced(name, amount))
    return envelope.stored(f"Order-{name}", 1, 1)


class AcksLost:
    """A receiver whose acks never reach the broker, as when a consumer dies before sending them."""

    def __init__(self, receiver: AsyncReceiver) -> None:
        self.receiver = receiver

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        return [_AckLost(d) for d in await self.receiver.fetch(limit, wait)]

    async def delete(self) -> None:
        await self.receiver.delete()

    async def aclose(self) -> None:
        await self.receiver.aclose()


class _AckLost:
    def __init__(self, delivery: AsyncDelivery) -> None:
        self._delivery = delivery

    @property
    def message(self) -> BrokerMessage:
        return self._delivery.message

    @property
    def redelivered(self) -> bool:
        return self._delivery.redelivered

    async def ack(self) -> None:
        pass

    async def nack(self) -> None:
        await self._delivery.nack()


async def consume_until(
    consumer: AsyncBrokerConsumer, done: Callable[[], Awaitable[bool]], seconds: float = 20
) -> None:
    """Run the consumer's batches until `done()` is true."""
    async with asyncio.timeout(seconds):
        while not await done():
            await consumer.run_once()


def test_a_message_delivered_again_after_its_ack_was_lost_is_not_handled_again(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        await prepare(store)
        inbox = AsyncInbox(store, "billing")
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("billing")
            orders = [order(str(n), n) for n in range(5)]
            for envelope in orders:
                await binding.publish(encoded(envelope, CODEC))
            first = AsyncBrokerConsumer(AcksLost(receiver), billing_bus(store, inbox), inbox)
            await consume_until(first, lambda: _count(inbox, 5))
            await receiver.aclose()  # dies: every message is delivered again
            receiver = await binding.receiver("billing")
            second = AsyncBrokerConsumer(receiver, billing_bus(store, inbox), inbox, wait=0.5)
            redelivered = 0
            while redelivered < 5:
                redelivered += await second.run_once()
            assert await second.run_once() == 0  # all acked this time
            assert sorted(await billed(store)) == sorted(str(e.message_id) for e in orders)
            assert await AsyncSQLDeadLetters(store, codec=CODEC).count() == 0
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_what_cannot_be_decoded_or_handled_is_dead_lettered_and_acked(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        await prepare(store)
        inbox = AsyncInbox(store, "billing")
        bus = billing_bus(store, inbox)
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("billing")
            await binding.publish(BrokerMessage("Order.x", b"not an event", {}))
            unknown = encoded(order("1"), CODEC)
            unknown_headers = {**unknown.headers, "tidings-type": "shop.Unheard"}
            await binding.publish(BrokerMessage(unknown.subject, unknown.body, unknown_headers))
            failing, good = order("unbillable"), order("2")
            await binding.publish(encoded(failing, CODEC))
            await binding.publish(encoded(good, CODEC))
            consumer = AsyncBrokerConsumer(receiver, bus, inbox, wait=0.5)
            await consume_until(consumer, lambda: _count(inbox, 2))
            assert await consumer.run_once() == 0  # nothing was left unacked
            assert await billed(store) == [str(good.message_id)]
            letters = await AsyncSQLDeadLetters(store, codec=CODEC).list()
            by_handler = sorted(letters, key=lambda letter: letter.handler)
            handlers = [letter.handler for letter in by_handler]
            assert handlers == [letter_handler("billing")] * 2 + ["tests.transports.billing.bill"]
            undecoded = [letter.envelope.message for letter in by_handler[:2]]
            assert all(isinstance(message, UndecodedEvent) for message in undecoded)
            assert by_handler[2].envelope.message_id == failing.message_id
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


async def _count(inbox: AsyncInbox, expected: int) -> bool:
    return await inbox.count() >= expected


def test_an_inbox_first_used_in_a_transaction_that_rolls_back_makes_its_table_again(
    open_store: OpenStore,
) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        inbox = AsyncInbox(store, "billing")
        message_id = order("1").message_id
        async with store.transaction() as tx:
            assert await inbox.record(message_id, tx=tx)
            await tx.rollback()  # and the table made in it with it
        assert not await inbox.seen(message_id)
        assert await inbox.record(message_id)
        assert await inbox.count() == 1
        await store.aclose()

    asyncio.run(scenario())


def test_an_inbox_keeps_consumers_apart(tmp_path: Path) -> None:
    async def scenario() -> None:
        with store_opener("sqlite", tmp_path) as open_store:
            store = open_store()
            billing, shipping = AsyncInbox(store, "billing"), AsyncInbox(store, "shipping")
            message_id = order("1").message_id
            assert await billing.record(message_id)
            assert not await billing.record(message_id)
            assert await billing.seen(message_id)
            assert not await shipping.seen(message_id)
            await store.aclose()

    asyncio.run(scenario())


def test_an_inbox_needs_a_store_that_keeps_tables() -> None:
    with pytest.raises(TypeError, match="keeps no tables"):
        AsyncInbox(AsyncMemoryStore(), "billing")


def test_two_deliveries_handled_at_once_bill_once(broker: Connect, open_store: OpenStore) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        await prepare(store)
        inbox = AsyncInbox(store, "billing")
        both_handling = asyncio.Barrier(2)

        async def together(
            envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
        ) -> Any:
            await both_handling.wait()  # each passed the inbox check before the other committed
            return await call_next(envelope)

        async with broker(unique_namespace()) as binding:
            # Two groups, one inbox: each delivers the message to the same consumer.
            first, second = await binding.receiver("one"), await binding.receiver("two")
            placed_order = order("1")
            await binding.publish(encoded(placed_order, CODEC))
            consumers = [
                AsyncBrokerConsumer(receiver, billing_bus(store, inbox, [together]), inbox)
                for receiver in (first, second)
            ]
            async with asyncio.timeout(20):
                await asyncio.gather(*(consumer.run_once() for consumer in consumers))
            assert await billed(store) == [str(placed_order.message_id)]
            (letter,) = await AsyncSQLDeadLetters(store, codec=CODEC).list()
            assert letter.error.startswith("AlreadyHandled")
            for receiver in (first, second):
                await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_a_consumer_stopped_before_it_runs_returns_at_once(broker: Connect, tmp_path: Path) -> None:
    """A stop that comes while the consumer is being made ready (a SIGTERM) is not lost."""

    async def scenario() -> None:
        with store_opener("sqlite", tmp_path) as open_store:
            store: AsyncEventStore = open_store()
            inbox = AsyncInbox(store, "billing")
            async with broker(unique_namespace()) as binding:
                receiver = await binding.receiver("billing")
                consumer = AsyncBrokerConsumer(receiver, billing_bus(store, inbox), inbox, wait=0.1)
                consumer.stop()
                async with asyncio.timeout(5):
                    await consumer.run()
                await receiver.delete()
            await store.aclose()

    asyncio.run(scenario())


class AcksFail(AcksLost):
    """A receiver whose broker connection breaks when the batch is acked."""

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        return [_AckFails(d) for d in await self.receiver.fetch(limit, wait)]


class _AckFails(_AckLost):
    async def ack(self) -> None:
        raise ConnectionError("the connection broke")


def test_an_ack_that_fails_raises_its_own_error_not_a_group(
    broker: Connect, tmp_path: Path
) -> None:
    """The acks of a batch go out at once; the first failure comes out as it is, not grouped."""

    async def scenario() -> None:
        with store_opener("sqlite", tmp_path) as open_store:
            store: AsyncEventStore = open_store()
            await prepare(store)
            inbox = AsyncInbox(store, "billing")
            async with broker(unique_namespace()) as binding:
                receiver = await binding.receiver("billing")
                orders = [order(str(n), n) for n in range(3)]
                for envelope in orders:
                    await binding.publish(encoded(envelope, CODEC))
                failing = AsyncBrokerConsumer(AcksFail(receiver), billing_bus(store, inbox), inbox)
                with pytest.raises(ConnectionError, match="the connection broke"):
                    async with asyncio.timeout(20):
                        while True:
                            await failing.run_once()
                assert await billed(store)  # committed before the acks failed
                await receiver.delete()
            await store.aclose()

    asyncio.run(scenario())
