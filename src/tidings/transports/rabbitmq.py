"""The RabbitMQ binding: a durable topic exchange per namespace, durable queues, manual acks.

Needs the `rabbitmq` extra (`pip install "tidings[rabbitmq]"`). A namespace
is the durable topic exchange `tidings.<namespace>`; an event is published
persistent with the routing key `<category>.<type>`, on a channel in
publisher-confirm mode, so `publish` returns once RabbitMQ has taken
responsibility for it. A consumer group is the durable queue
`tidings.<namespace>.<group>` (a quorum queue with `quorum=True`), bound to
`#` or to `<category>.#` for each of its categories; deliveries are acked by
hand, and one left unacked when its connection closes is delivered again.

RabbitMQ keeps a message only for the queues bound when it arrives: make
the consumer groups (`receiver`) before publishing what they must get. A
queue hands its messages out in the order they arrived, redeliveries aside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

try:
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "tidings.transports.rabbitmq needs the rabbitmq extra: "
        f'pip install "tidings[rabbitmq]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.transports.binding import AsyncDelivery, BrokerMessage, category_token, check_name

__all__ = ["RabbitMQBinding", "RabbitMQDelivery", "RabbitMQReceiver"]

_BROKER_HEADERS = frozenset({"x-delivery-count", "x-death"})
_BROKER_PREFIXES = ("x-first-death-", "x-last-death-")


class RabbitMQDelivery:
    """A message taken from a queue; `ack` and `nack` answer RabbitMQ for it."""

    def __init__(self, incoming: AbstractIncomingMessage) -> None:
        self._incoming = incoming
        # RabbitMQ's own headers (a quorum queue counts redeliveries) are not the message's.
        headers = {
            key: value.decode() if isinstance(value, bytes) else str(value)
            for key, value in (incoming.headers or {}).items()
            if key not in _BROKER_HEADERS
            and not key.startswith(("x-first-death-", "x-last-death-"))
        }
        self._message = BrokerMessage(incoming.routing_key or "", incoming.body, headers)

    @property
    def message(self) -> BrokerMessage:
        return self._message

    @property
    def redelivered(self) -> bool:
        return bool(self._incoming.redelivered)

    async def ack(self) -> None:
        await self._incoming.ack()

    async def nack(self) -> None:
        await self._incoming.nack(requeue=True)


class RabbitMQReceiver:
    """A durable queue, consumed on a channel of its own with up to `prefetch` unacked."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self._channel = channel
        self._queue = queue
        self._received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._tag: str | None = None

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._received.put, no_ack=False)

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        try:
            first = await asyncio.wait_for(self._received.get(), wait)
        except TimeoutError:
            return []
        taken: list[AsyncDelivery] = [RabbitMQDelivery(first)]
        while len(taken) < limit and not self._received.empty():
            taken.append(RabbitMQDelivery(self._received.get_nowait()))
        return taken

    async def delete(self) -> None:
        await self._queue.delete(if_unused=False, if_empty=False)
        await self._channel.close()

    async def aclose(self) -> None:
        """Stop consuming; what was received and not acked is delivered again."""
        await self._channel.close()


class RabbitMQBinding:
    """A connection to RabbitMQ, publishing into and receiving from the exchange of `namespace`.

    ::

        binding = await RabbitMQBinding.connect("amqp://guest:guest@127.0.0.1/", "orders")

    `namespace` and group names are made of letters, digits, `_` and `-`.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        namespace: str,
        *,
        prefetch: int,
        quorum: bool = False,
    ) -> None:
        self.connection = connection
        self._channel = channel
        self._exchange = exchange
        self._namespace = namespace
        self.prefetch = prefetch
        self.quorum = quorum
        self._queues: set[str] = set()  # declared by this binding's receivers

    @classmethod
    async def connect(
        cls, url: str, namespace: str, *, prefetch: int = 100, quorum: bool = False
    ) -> RabbitMQBinding:
        """Connect to `url` and declare the namespace's exchange.

        With `quorum`, the groups' queues are quorum queues (replicated by
        Raft, each message fsynced by a majority before its confirm) rather
        than classic ones; a queue keeps the type it was first declared with.
        """
        check_name("namespace", namespace)
        connection = await aio_pika.connect_robust(url, timeout=5)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            f"tidings.{namespace}", aio_pika.ExchangeType.TOPIC, durable=True
        )
        return cls(connection, channel, exchange, namespace, prefetch=prefetch, quorum=quorum)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def publish(self, message: BrokerMessage) -> None:
        headers = message.headers
        await self._exchange.publish(
            aio_pika.Message(
                message.body,
                headers=dict(headers),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id or None,
                correlation_id=headers.get("tidings-correlation-id"),
                type=headers.get("tidings-type"),
            ),
            routing_key=message.subject,
        )

    async def receiver(
        self, group: str, *, categories: Collection[str] | None = None
    ) -> RabbitMQReceiver:
        check_name("group", group)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        arguments = {"x-queue-type": "quorum"} if self.quorum else None
        queue = await channel.declare_queue(
            f"tidings.{self._namespace}.{group}", durable=True, arguments=arguments
        )
        self._queues.add(queue.name)
        keys = [f"{category_token(c)}.#" for c in sorted(categories or ())] or ["#"]
        for key in keys:
            await queue.bind(self._exchange.name, routing_key=key)
        receiver = RabbitMQReceiver(channel, queue)
        await receiver.start()
        return receiver

    async def delete(self) -> None:
        """Delete the exchange and the queues this binding's receivers declared."""
        for name in sorted(self._queues):
            await self._channel.queue_delete(name)
        self._queues.clear()
        await self._channel.exchange_delete(self._exchange.name)

    async def aclose(self) -> None:
        await self.connection.close()
