"""The consumer takes deliveries a batch at a time, each message's effects still once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest

from tests.transports.app import CODEC, OpenStore, OrderPlaced
from tests.transports.billing import billed, billing_bus, prepare
from tests.transports.brokers import Connect, unique_namespace
from tests.transports.test_consumer import order
from tidings import Envelope, Message, StoreUnavailable
from tidings.dead_letters import AsyncSQLDeadLetters
from tidings.store import AsyncEventStore
from tidings.transports.binding import AsyncBinding, AsyncDelivery, AsyncReceiver, BrokerMessage
from tidings.transports.consumer import AsyncBrokerConsumer
from tidings.transports.envelopes import encoded
from tidings.transports.inbox import AsyncInbox

pytestmark = pytest.mark.brokers

ORDERS = 20


class Watching:
    """A receiver that checks, as each delivery is acked, that its message is in the inbox;
    with `twice`, each delivery is handed out twice in its batch (the copy's answers unsent)."""

    def __init__(self, receiver: AsyncReceiver, inbox: AsyncInbox, *, twice: bool = False) -> None:
        self.receiver = receiver
        self.inbox = inbox
        self.twice = twice
        self.batches: list[int] = []
        self.acked_unrecorded: list[str] = []

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        deliveries: list[AsyncDelivery] = []
        for delivery in await self.receiver.fetch(limit, wait):
            deliveries.append(_Watched(self, delivery, answers=True))
            if self.twice:
                deliveries.append(_Watched(self, delivery, answers=False))
        if deliveries:
            self.batches.append(len(deliveries))
        return deliveries

    async def delete(self) -> None:
        await self.receiver.delete()

    async def aclose(self) -> None:
        await self.receiver.aclose()


class _Watched:
    def __init__(self, watching: Watching, delivery: AsyncDelivery, *, answers: bool) -> None:
        self._watching = watching
        self._delivery = delivery
        self._answers = answers

    @property
    def message(self) -> BrokerMessage:
        return self._delivery.message

    @property
    def redelivered(self) -> bool:
        return self._delivery.redelivered

    async def ack(self) -> None:
        message_id = self.message.message_id
        if not await self._watching.inbox.seen_among([UUID(message_id)]):
            self._watching.acked_unrecorded.append(message_id)
        if self._answers:
            await self._delivery.ack()

    async def nack(self) -> None:
        if self._answers:
            await self._delivery.nack()


async def published(binding: AsyncBinding, count: int) -> list[str]:
    orders = [order(str(n), n) for n in range(count)]
    for envelope in orders:
        await binding.publish(encoded(envelope, CODEC))
    return [str(e.message_id) for e in orders]


async def consume_until(consumer: AsyncBrokerConsumer, inbox: AsyncInbox, count: int) -> None:
    async with asyncio.timeout(20):
        while await inbox.count() < count:
            await consumer.run_once()


def test_a_batch_is_recorded_before_it_is_acked_and_repeats_in_it_are_skipped(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        await prepare(store)
        inbox = AsyncInbox(store, "billing")
        await inbox.prepare()
        async with broker(unique_namespace()) as binding:
            receiver = Watching(await binding.receiver("billing"), inbox, twice=True)
            ids = await published(binding, ORDERS)
            consumer = AsyncBrokerConsumer(receiver, billing_bus(store, inbox), inbox, wait=0.5)
            await consume_until(consumer, inbox, ORDERS)
            assert await consumer.run_once() == 0  # all acked
            assert max(receiver.batches) > 2  # several messages (and their repeats) at once
            assert receiver.acked_unrecorded == []
            assert sorted(await billed(store)) == sorted(ids)  # each once, repeats skipped
            assert await AsyncSQLDeadLetters(store, codec=CODEC).count() == 0
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())


def test_a_store_failing_mid_batch_brings_the_batch_again_each_message_billed_once(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        store: AsyncEventStore = open_store()
        await prepare(store)
        inbox = AsyncInbox(store, "billing")
        await inbox.prepare()
        failures = [True]

        async def once_unavailable(
            envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
        ) -> Any:
            event = envelope.message
            if failures and isinstance(event, OrderPlaced) and event.order == str(ORDERS // 2):
                failures.clear()
                raise StoreUnavailable("the store went away")
            return await call_next(envelope)

        async with broker(unique_namespace()) as binding:
            receiver = Watching(await binding.receiver("billing"), inbox)
            ids = await published(binding, ORDERS)
            bus = billing_bus(store, inbox, [once_unavailable])
            consumer = AsyncBrokerConsumer(receiver, bus, inbox, wait=0.5, retry_after=0.01)
            await consume_until(consumer, inbox, ORDERS)
            assert not failures  # it did fail once
            assert receiver.acked_unrecorded == []
            assert sorted(await billed(store)) == sorted(ids)
            assert await AsyncSQLDeadLetters(store, codec=CODEC).count() == 0
            await receiver.delete()
        await store.aclose()

    asyncio.run(scenario())
