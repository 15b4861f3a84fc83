"""The Redis pub/sub binding, for compatibility: at most once, nothing kept, nothing redelivered.

Needs the `redis` extra (`pip install "tidings[redis]"`). Prefer
`tidings.transports.redis` (Streams): pub/sub is for talking to services that
already speak it. An event is published (`PUBLISH`) on the channel
`tidings:<namespace>:<category>.<type>`, as one frame: the headers as a JSON
object, a newline, then the body. Redis hands it to the receivers
subscribed at that moment and forgets it, so:

- a message published while no receiver is subscribed (or while one is
  disconnected) is lost: `publish` returns once Redis has taken it, not once
  anyone has it;
- `ack` and `nack` do nothing: a message nacked, or received by a consumer
  that crashes before handling it, is not delivered again;
- a "group" is no group: every receiver receives every message of its
  categories, whatever group it names.

Order is kept, per publisher connection, to each receiver.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import msgspec

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "tidings.transports.redis_pubsub needs the redis extra: "
        f'pip install "tidings[redis]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.transports.binding import AsyncDelivery, BrokerMessage, category_token, check_name
from tidings.transports.envelopes import MalformedMessage

__all__ = ["RedisPubSubBinding", "RedisPubSubDelivery", "RedisPubSubReceiver", "frame", "unframe"]

_headers = msgspec.json.Decoder(dict[str, str])


def frame(message: BrokerMessage) -> bytes:
    """The bytes published for `message`: its headers as JSON, a newline, its body."""
    return msgspec.json.encode(dict(message.headers)) + b"\n" + message.body


def unframe(subject: str, data: bytes) -> BrokerMessage:
    """The message `frame` made; `MalformedMessage` if `data` is not such a frame."""
    head, newline, body = data.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no newline after the headers")
        headers = _headers.decode(head)
    except (ValueError, msgspec.DecodeError) as exc:
        raise MalformedMessage(f"not a tidings pub/sub frame: {exc}") from exc
    return BrokerMessage(subject, body, headers)


class RedisPubSubDelivery:
    """A message received on a channel; Redis keeps nothing to ack or redeliver."""

    def __init__(self, message: BrokerMessage) -> None:
        self._message = message

    @property
    def message(self) -> BrokerMessage:
        return self._message

    @property
    def redelivered(self) -> bool:
        return False

    async def ack(self) -> None:
        """Nothing to do: Redis forgot the message when it sent it."""

    async def nack(self) -> None:
        """Nothing to do, and the message is not delivered again: pub/sub is at most once."""


class RedisPubSubReceiver:
    """A subscription to the namespace's channels (of some categories, or all)."""

    def __init__(self, pubsub: PubSub, prefix: str) -> None:
        self._pubsub = pubsub
        self._prefix = prefix

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        deadline = time.monotonic() + wait
        taken: list[AsyncDelivery] = []
        while len(taken) < limit:
            left = deadline - time.monotonic() if not taken else 0.0
            received = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=max(0.0, left)
            )
            if received is None:
                if taken or time.monotonic() >= deadline:
                    break
                continue
            channel = received["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            subject = channel.removeprefix(self._prefix)
            data = received["data"]
            body = data if isinstance(data, bytes) else str(data).encode()
            try:
                message = unframe(subject, body)
            except MalformedMessage:  # foreign bytes: handed on as they are, to be dead-lettered
                message = BrokerMessage(subject, body, {})
            taken.append(RedisPubSubDelivery(message))
        return taken

    async def delete(self) -> None:
        """Nothing is kept for a subscription: the same as `aclose`."""
        await self.aclose()

    async def aclose(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py


class RedisPubSubBinding:
    """A connection to Redis publishing to and subscribing to the channels of `namespace`.

    ::

        binding = await RedisPubSubBinding.connect("redis://127.0.0.1:6379/0", "orders")

    At most once: see the module.
    """

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        check_name("namespace", namespace)
        self.client = client
        self._namespace = namespace
        self.prefix = f"tidings:{namespace}:"

    @classmethod
    async def connect(cls, url: str, namespace: str) -> RedisPubSubBinding:
        """Connect to `url` (`redis://host:port/db`) and check that the server answers."""
        check_name("namespace", namespace)
        client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        await client.ping()
        return cls(client, namespace)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def publish(self, message: BrokerMessage) -> None:
        """Hand `message` to Redis, which sends it to whoever is subscribed now."""
        await self.client.publish(self.prefix + message.subject, frame(message))

    async def receiver(
        self, group: str, *, categories: Collection[str] | None = None
    ) -> RedisPubSubReceiver:
        """A subscription, in place once this returns; `group` is only checked (see the module)."""
        check_name("group", group)
        patterns = [f"{self.prefix}{category_token(c)}.*" for c in sorted(categories or ())]
        pubsub = self.client.pubsub()
        await pubsub.psubscribe(*(patterns or [f"{self.prefix}*"]))
        confirmed = 0
        while confirmed < len(patterns or [None]):  # Redis has taken each subscription
            answer = await pubsub.get_message(timeout=5.0)
            if answer is None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise TimeoutError("Redis did not confirm the subscription within 5 s")
            confirmed += answer["type"] == "psubscribe"
        return RedisPubSubReceiver(pubsub, self.prefix)

    async def delete(self) -> None:
        """Nothing to delete: pub/sub keeps no messages and no subscriptions of its own."""

    async def aclose(self) -> None:
        await self.client.aclose()
