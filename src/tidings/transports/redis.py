"""The Redis Streams binding: a stream per namespace, consumer groups, acks, reclaim after a crash.

Needs the `redis` extra (`pip install "tidings[redis]"`). A namespace is the
stream `tidings:<namespace>`; an event is appended to it by `XADD`, its
subject, body and envelope headers as the entry's fields, and `publish`
returns once Redis has answered with the entry's id. The message id is
checked in the same step (one Lua script) against the ids published within
`dedupe_window` seconds, so an event the relay publishes again after a crash
is dropped, as JetStream drops a repeated `Nats-Msg-Id`. Publications
awaited at once are sent together, pipelined on one connection.

A consumer group is a Redis consumer group on the stream, made at its start
(`0`) so it receives what was published before it; each receiver is a
consumer of its own in the group. A delivery is acked with `XACK`; one left
unacked (its receiver crashed or closed) stays in the group's pending
entries, and once it has been idle for `ack_wait` seconds another receiver of
the group claims it (`XAUTOCLAIM`) and it is delivered again. Acks awaited
at once (the consumer's, for a batch whose handling has committed) go out
as one `XACK` of all their entries. A nack marks the entry as idle long
enough to be claimed at once.

A group with categories reads the whole stream and acks at once what is not
of its categories: the stream keeps publication order across categories.
How long Redis keeps what it was sent depends on its persistence: with AOF
and `appendfsync always`, an acked `XADD` survives a crash of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

try:
    import redis.asyncio as aioredis
    import redis.exceptions
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f'tidings.transports.redis needs the redis extra: pip install "tidings[redis]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.errors import InvalidValue
from tidings.transports.binding import AsyncDelivery, BrokerMessage, category_token, check_name

__all__ = ["RedisDelivery", "RedisReceiver", "RedisStreamsBinding"]

SUBJECT_FIELD = "tidings-subject"
BODY_FIELD = "tidings-body"
_OWN_FIELDS = frozenset({SUBJECT_FIELD, BODY_FIELD})

# KEYS: stream, seen ids; ARGV: message id ("" for none), now (ms), window (ms), maxlen (0: none),
# then field, value pairs. The entry's id, or false when the message id was seen within the window.
_PUBLISH = """
local id = ARGV[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
if id ~= '' and window > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
    if redis.call('ZSCORE', KEYS[2], id) then
        return false
    end
    redis.call('ZADD', KEYS[2], now, id)
end
local args = {'XADD', KEYS[1]}
local maxlen = tonumber(ARGV[4])
if maxlen > 0 then
    table.insert(args, 'MAXLEN')
    table.insert(args, '~')
    table.insert(args, maxlen)
end
table.insert(args, '*')
for i = 5, #ARGV do
    table.insert(args, ARGV[i])
end
return redis.call(unpack(args))
"""

_FOREVER_MS = 10**12  # an idle time that any XAUTOCLAIM's bound is below


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDelivery:
    """An entry of the stream delivered to a receiver; `ack` and `nack` answer its group."""

    def __init__(
        self,
        receiver: RedisReceiver,
        entry_id: bytes,
        message: BrokerMessage,
        *,
        redelivered: bool,
    ) -> None:
        self._receiver = receiver
        self.entry_id = entry_id
        self._message = message
        self._redelivered = redelivered

    @property
    def message(self) -> BrokerMessage:
        return self._message

    @property
    def redelivered(self) -> bool:
        return self._redelivered

    async def ack(self) -> None:
        await self._receiver.acknowledge_soon(self.entry_id)

    async def nack(self) -> None:
        await self._receiver.give_back(self.entry_id)


class RedisReceiver:
    """One consumer of a group: what it reads stays pending in the group until acked."""

    def __init__(
        self,
        binding: RedisStreamsBinding,
        group: str,
        categories: Collection[str] | None,
    ) -> None:
        self._binding = binding
        self.group = group
        self.consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self._subjects = tuple(f"{category_token(c)}." for c in categories) if categories else None
        self._cursor = "0-0"
        self._next_claim = 0.0  # when to look for pending entries left idle next
        self._acks: list[tuple[bytes, asyncio.Future[None]]] = []
        self._acking: asyncio.Task[None] | None = None

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        deadline = time.monotonic() + wait
        while True:
            taken = await self._claim(limit)
            if not taken:
                left = deadline - time.monotonic()
                # Block in slices no longer than the idle bound, so pending entries of a
                # crashed receiver are claimed while waiting for new ones.
                block = max(0.0, min(left, self._binding.ack_wait / 2))
                taken = await self._read(limit, block)
            deliveries = await self._kept(taken)
            if deliveries or time.monotonic() >= deadline:
                return deliveries

    async def acknowledge(self, entry_ids: Sequence[bytes]) -> None:
        await self._binding.client.xack(self._binding.stream, self.group, *entry_ids)

    async def acknowledge_soon(self, entry_id: bytes) -> None:
        """Ack `entry_id` in one `XACK` with the others awaited at once, once Redis answers."""
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append((entry_id, answer))
        if self._acking is None or self._acking.done():
            self._acking = asyncio.create_task(self._send_acks())
        await answer

    async def _send_acks(self) -> None:
        await asyncio.sleep(0)  # let the acks started with this one queue too
        while self._acks:
            batch, self._acks = self._acks, []
            error: Exception | None = None
            try:
                await self.acknowledge([entry_id for entry_id, _answer in batch])
            except Exception as exc:  # the connection: none of the batch is acked
                error = exc
            for _entry_id, answer in batch:
                if answer.done():  # its acker was cancelled
                    continue
                if error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result(None)

    async def give_back(self, entry_id: bytes) -> None:
        """Leave the entry pending, idle long enough that the group's next claim takes it."""
        await self._binding.client.xclaim(
            self._binding.stream,
            self.group,
            self.consumer,
            0,
            [entry_id],
            idle=_FOREVER_MS,
            justid=True,
        )
        self._next_claim = 0.0

    async def delete(self) -> None:
        with contextlib.suppress(redis.exceptions.ResponseError):  # the stream is gone already
            await self._binding.client.xgroup_destroy(self._binding.stream, self.group)

    async def aclose(self) -> None:
        """Stop receiving; what was received and not acked is claimed by another receiver."""
        client, stream = self._binding.client, self._binding.stream
        with contextlib.suppress(redis.exceptions.ResponseError):
            summary = await client.xpending_range(
                stream, self.group, "-", "+", 1, consumername=self.consumer
            )
            if not summary:  # nothing left pending under this name: forget it
                await client.xgroup_delconsumer(stream, self.group, self.consumer)

    async def _claim(self, limit: int) -> list[tuple[bytes, dict[bytes, bytes], bool]]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        answer: Any = await self._binding.client.xautoclaim(
            self._binding.stream,
            self.group,
            self.consumer,
            int(self._binding.ack_wait * 1000),
            start_id=self._cursor,
            count=limit,
        )
        cursor, entries = _text(answer[0]), answer[1]
        if cursor == "0-0":  # the whole pending list was scanned: wait before the next scan
            self._next_claim = now + self._binding.ack_wait / 4
        self._cursor = cursor
        return [(entry_id, fields, True) for entry_id, fields in entries if fields is not None]

    async def _read(self, limit: int, block: float) -> list[tuple[bytes, dict[bytes, bytes], bool]]:
        answer: Any = await self._binding.client.xreadgroup(
            self.group,
            self.consumer,
            {self._binding.stream: ">"},
            count=limit,
            block=max(1, int(block * 1000)),
        )
        if not answer:
            return []
        ((_stream, entries),) = answer  # RESP2, redis-py's default: [[stream, entries]]
        return [(entry_id, fields, False) for entry_id, fields in entries]

    async def _kept(
        self, taken: list[tuple[bytes, dict[bytes, bytes], bool]]
    ) -> list[AsyncDelivery]:
        """The deliveries of this group's categories; the others are acked unseen."""
        deliveries: list[AsyncDelivery] = []
        skipped: list[bytes] = []
        for entry_id, fields, redelivered in taken:
            message = _message(fields)
            if self._subjects is not None and not message.subject.startswith(self._subjects):
                skipped.append(entry_id)
                continue
            deliveries.append(RedisDelivery(self, entry_id, message, redelivered=redelivered))
        if skipped:
            await self.acknowledge(skipped)
        return deliveries


def _message(fields: Mapping[bytes, bytes]) -> BrokerMessage:
    headers: dict[str, str] = {}
    subject, body = "", b""
    for key, value in fields.items():
        name = _text(key)
        if name == SUBJECT_FIELD:
            subject = _text(value)
        elif name == BODY_FIELD:
            body = value
        else:
            headers[name] = value.decode(errors="replace")
    return BrokerMessage(subject, body, headers)


class RedisStreamsBinding:
    """A connection to Redis, publishing into and receiving from the stream of `namespace`.

    ::

        binding = await RedisStreamsBinding.connect("redis://127.0.0.1:6379/0", "orders")

    `namespace` and group names are made of letters, digits, `_` and `-`.
    `ack_wait` is how long a delivery may stay unacked before another
    receiver of its group claims it; `dedupe_window` how long a message id
    is remembered to drop a repeat (0: never dropped); `maxlen`, if given,
    trims the stream to about that many entries (trimmed entries are gone
    even for groups that have not read them).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        ack_wait: float = 30.0,
        dedupe_window: float = 120.0,
        maxlen: int | None = None,
    ) -> None:
        check_name("namespace", namespace)
        if ack_wait <= 0:
            raise InvalidValue(f"ack_wait is a positive number of seconds, not {ack_wait}")
        self.client = client
        self._namespace = namespace
        self.stream = f"tidings:{namespace}"
        self.seen = f"tidings:{namespace}:seen"
        self.ack_wait = ack_wait
        self.dedupe_window = dedupe_window
        self.maxlen = maxlen
        self._script = client.register_script(_PUBLISH)
        self._waiting: list[tuple[list[Any], asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        namespace: str,
        *,
        ack_wait: float = 30.0,
        dedupe_window: float = 120.0,
        maxlen: int | None = None,
    ) -> RedisStreamsBinding:
        """Connect to `url` (`redis://host:port/db`) and check that the server answers."""
        check_name("namespace", namespace)
        client = aioredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=10)
        await client.ping()
        return cls(client, namespace, ack_wait=ack_wait, dedupe_window=dedupe_window, maxlen=maxlen)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def publish(self, message: BrokerMessage) -> None:
        clash = _OWN_FIELDS.intersection(message.headers)
        if clash:
            raise InvalidValue(f"header {sorted(clash)[0]!r} is the binding's own stream field")
        fields: list[str | bytes] = [SUBJECT_FIELD, message.subject, BODY_FIELD, message.body]
        for key, value in message.headers.items():
            fields += [key, value]
        now_ms = int(time.time() * 1000)
        args = [message.message_id, now_ms, int(self.dedupe_window * 1000), self.maxlen or 0]
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(([*args, *fields], answer))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())
        await answer

    async def _send(self) -> None:
        """Send what `publish` queued, as pipelines on one connection, in the order queued.

        Publications awaited at once (the relay's, in flight together) go
        out in one round trip instead of one each, and over one connection,
        however many there are.
        """
        await asyncio.sleep(0)  # let the publications started with this one queue too
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for args, _answer in batch:
                        await self._script(keys=[self.stream, self.seen], args=args, client=pipe)
                    results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the connection: every publication of the batch failed
                results = [exc] * len(batch)
            for (_args, answer), result in zip(batch, results, strict=True):
                if answer.done():  # its publisher was cancelled
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(None)

    async def receiver(
        self, group: str, *, categories: Collection[str] | None = None
    ) -> RedisReceiver:
        """The consumer group `group`, made at the stream's start if missing."""
        check_name("group", group)
        try:
            await self.client.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return RedisReceiver(self, group, categories)

    async def delete(self) -> None:
        await self.client.delete(self.stream, self.seen)

    async def aclose(self) -> None:
        await self.client.aclose()
