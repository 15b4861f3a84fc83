"""The NATS JetStream binding: a stream per namespace, durable pull consumers, explicit acks.

Needs the `nats` extra (`pip install "tidings[nats]"`). A namespace is one
stream, `TIDINGS_<namespace>`, holding the subjects `<namespace>.>` on disk;
an event is published to `<namespace>.<category>.<type>` and `publish`
returns once JetStream has stored it (its PubAck). The message id is also
sent as `Nats-Msg-Id`, so JetStream drops a message published again within
its duplicate window (two minutes by default), as a relay does after a crash.

A consumer group is a durable pull consumer: it survives restarts, and a
message not acked within `ack_wait` seconds (or nacked) is delivered again.
One stream keeps its messages in publication order, and a group receives
them in that order, each redelivery aside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
    from nats.js.client import JetStreamContext
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f'tidings.transports.nats needs the nats extra: pip install "tidings[nats]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.transports.binding import AsyncDelivery, BrokerMessage, category_token, check_name

__all__ = ["NatsBinding", "NatsDelivery", "NatsReceiver"]


class NatsDelivery:
    """A JetStream message received; `ack` and `nack` answer JetStream for it."""

    def __init__(self, msg: Msg, namespace: str) -> None:
        self._msg = msg
        subject = msg.subject.removeprefix(f"{namespace}.")
        # The Nats-* headers are JetStream's own (set by publish), not the message's.
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        self._message = BrokerMessage(subject, msg.data, headers)

    @property
    def message(self) -> BrokerMessage:
        return self._message

    @property
    def redelivered(self) -> bool:
        return self._msg.metadata.num_delivered > 1

    async def ack(self) -> None:
        await self._msg.ack()

    async def nack(self) -> None:
        await self._msg.nak()


class NatsReceiver:
    """A durable pull consumer of the namespace's stream."""

    def __init__(
        self, binding: NatsBinding, group: str, subscription: JetStreamContext.PullSubscription
    ) -> None:
        self._binding = binding
        self._group = group
        self._subscription = subscription

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        try:
            msgs = await self._subscription.fetch(limit, timeout=wait)
        except TimeoutError:  # nats.errors.TimeoutError, or asyncio's from deeper down
            return []
        namespace = self._binding.namespace
        return [NatsDelivery(msg, namespace) for msg in msgs]

    async def aclose(self) -> None:
        await self._subscription.unsubscribe()

    async def delete(self) -> None:
        await self._subscription.unsubscribe()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._binding.jetstream.delete_consumer(self._binding.stream, self._group)


class NatsBinding:
    """A connection to NATS, publishing into and receiving from the stream of `namespace`.

    ::

        binding = await NatsBinding.connect("nats://127.0.0.1:4222", "orders")

    `namespace` and group names are made of letters, digits, `_` and `-`.
    `ack_wait` is how long a delivery may stay unanswered before JetStream
    delivers it again.
    """

    def __init__(self, client: Client, namespace: str, *, ack_wait: float = 30.0) -> None:
        check_name("namespace", namespace)
        self.client = client
        self.jetstream = client.jetstream()
        self._namespace = namespace
        self.stream = f"TIDINGS_{namespace}"
        self.ack_wait = ack_wait
        self._ready = False

    @classmethod
    async def connect(
        cls, servers: str | list[str], namespace: str, *, ack_wait: float = 30.0
    ) -> NatsBinding:
        """Connect to `servers` and make the namespace's stream if missing."""
        check_name("namespace", namespace)
        client = await nats.connect(servers, connect_timeout=5, max_reconnect_attempts=-1)
        binding = cls(client, namespace, ack_wait=ack_wait)
        await binding._ensure()
        return binding

    @property
    def namespace(self) -> str:
        return self._namespace

    async def publish(self, message: BrokerMessage) -> None:
        await self._ensure()
        headers = dict(message.headers)
        if message.message_id:
            headers["Nats-Msg-Id"] = message.message_id
        await self.jetstream.publish(
            f"{self._namespace}.{message.subject}",
            message.body,
            headers=headers,
            stream=self.stream,
        )

    async def receiver(
        self, group: str, *, categories: Collection[str] | None = None
    ) -> NatsReceiver:
        """The durable consumer `group`; several categories need nats-server 2.10 or later."""
        check_name("group", group)
        await self._ensure()
        subjects = [f"{self._namespace}.{category_token(c)}.>" for c in sorted(categories or ())]
        config = ConsumerConfig(
            durable_name=group,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
        )
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        elif subjects:
            config.filter_subjects = subjects
        await self.jetstream.add_consumer(self.stream, config)
        subscription = await self.jetstream.pull_subscribe_bind(group, stream=self.stream)
        return NatsReceiver(self, group, subscription)

    async def delete(self) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.jetstream.delete_stream(self.stream)
        self._ready = False

    async def aclose(self) -> None:
        """Close the connection once the server has had everything sent (acks included)."""
        if self.client.is_connected:
            await self.client.flush()
        await self.client.close()

    async def _ensure(self) -> None:
        if self._ready:
            return
        await self.jetstream.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[f"{self._namespace}.>"],
                storage=StorageType.FILE,
            )
        )
        self._ready = True
