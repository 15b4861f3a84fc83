"""The contract every broker binding keeps, run against real NATS, RabbitMQ and Redis servers."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time

import pytest

from tests.transports.brokers import Connect, unique_namespace
from tidings.errors import InvalidValue
from tidings.transports.binding import AsyncReceiver, BrokerMessage

pytestmark = pytest.mark.brokers


def message(n: int, category: str = "Order") -> BrokerMessage:
    headers = {"tidings-message-id": f"id-{n}", "n": str(n)}
    return BrokerMessage(f"{category}.Placed", f'{{"n":{n}}}'.encode(), headers)


async def drain(receiver: AsyncReceiver, count: int, wait: float = 5.0) -> list[BrokerMessage]:
    """Receive and ack `count` messages (fewer if they stop coming within `wait`)."""
    got: list[BrokerMessage] = []
    while len(got) < count:
        deliveries = await receiver.fetch(count - len(got), wait)
        if not deliveries:
            break
        for delivery in deliveries:
            got.append(delivery.message)
            await delivery.ack()
    return got


def test_a_published_message_arrives_whole_and_once_acked_is_gone(broker: Connect) -> None:
    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            await binding.publish(message(1))
            (delivery,) = await receiver.fetch(10, 5.0)
            assert delivery.message == message(1)
            assert not delivery.redelivered
            await delivery.ack()
            assert await receiver.fetch(10, 0.5) == []
            await receiver.delete()

    asyncio.run(scenario())


def test_a_nacked_message_is_delivered_again(broker: Connect) -> None:
    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            await binding.publish(message(1))
            (first,) = await receiver.fetch(1, 5.0)
            await first.nack()
            (again,) = await receiver.fetch(1, 5.0)
            assert again.message == message(1)
            assert again.redelivered
            await again.ack()
            await receiver.delete()

    asyncio.run(scenario())


def test_what_a_closed_receiver_left_unacked_goes_to_the_next_one(broker: Connect) -> None:
    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            for n in range(3):
                await binding.publish(message(n))
            taken = await receiver.fetch(3, 5.0)
            assert len(taken) >= 1
            await taken[0].ack()
            await receiver.aclose()  # the rest stay unacked, as after a crash
            successor = await binding.receiver("g1")
            # NATS redelivers once ack_wait (2 s in these tests) runs out.
            got = await drain(successor, 2, wait=10.0)
            assert sorted(m.headers["n"] for m in got) == ["1", "2"]
            assert await successor.fetch(1, 0.5) == []
            await successor.delete()

    asyncio.run(scenario())


def test_a_group_receives_in_publication_order(broker: Connect) -> None:
    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            for n in range(200):
                await binding.publish(message(n))
            got = await drain(receiver, 200)
            assert [m.headers["n"] for m in got] == [str(n) for n in range(200)]
            await receiver.delete()

    asyncio.run(scenario())


def test_a_fetch_returns_once_its_first_delivery_is_in_not_when_its_wait_ends(
    broker: Connect,
) -> None:
    """A message arriving while a fetch waits is handed out at once: no waiting for a full batch."""

    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            assert await receiver.fetch(100, 0.2) == []  # drained
            fetching = asyncio.create_task(receiver.fetch(100, 5.0))
            await asyncio.sleep(0.3)  # the fetch is waiting
            await binding.publish(message(1))
            published = time.monotonic()
            got = await fetching
            assert time.monotonic() - published < 2.5
            assert [d.message.headers["n"] for d in got] == ["1"]
            await receiver.delete()

    asyncio.run(scenario())


def test_groups_each_receive_everything_and_categories_filter(broker: Connect) -> None:
    async def scenario() -> None:
        async with broker(unique_namespace()) as binding:
            everything = await binding.receiver("all")
            orders = await binding.receiver("orders", categories=["Order"])
            await binding.publish(message(1, "Order"))
            await binding.publish(message(2, "Invoice"))
            await binding.publish(message(3, "Order"))
            assert [m.headers["n"] for m in await drain(everything, 3)] == ["1", "2", "3"]
            assert [m.headers["n"] for m in await drain(orders, 3, wait=1.0)] == ["1", "3"]
            await everything.delete()
            await orders.delete()

    asyncio.run(scenario())


def test_deleting_a_namespace_deletes_its_groups_and_their_messages(broker: Connect) -> None:
    async def scenario() -> None:
        namespace = unique_namespace()
        async with broker(namespace) as binding:
            await binding.receiver("g1")
            await binding.publish(message(1))
            await binding.delete()
        async with broker(namespace) as binding:
            receiver = await binding.receiver("g1")
            assert await receiver.fetch(10, 1.0) == []

    asyncio.run(scenario())


def test_names_unsafe_for_the_broker_are_refused(broker: Connect) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidValue, match="letters, digits"):
            async with broker("orders.eu"):
                pass
        async with broker(unique_namespace()) as binding:
            with pytest.raises(InvalidValue, match="letters, digits"):
                await binding.receiver("a group")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("module", "client"),
    [("nats", "nats"), ("rabbitmq", "aio_pika"), ("redis", "redis"), ("redis_pubsub", "redis")],
)
def test_a_binding_without_its_extra_names_the_extra(
    module: str, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, client, None)
    monkeypatch.delitem(sys.modules, f"tidings.transports.{module}", raising=False)
    extra = module.partition("_")[0]
    with pytest.raises(ModuleNotFoundError, match=rf'pip install "tidings\[{extra}\]"'):
        importlib.import_module(f"tidings.transports.{module}")
