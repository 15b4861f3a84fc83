"""The allocation service on Redis pub/sub, in the book's protocol: commands in, events out.

Another service asks for a batch to change by publishing, on the channel
`change_batch_quantity`, the JSON `{"batchref": "b1", "qty": 5}`:
`ChangeBatchQuantityConsumer` hands each such message to the bus as a
`ChangeBatchQuantity` command. A message that is not that JSON (bad JSON, a
field missing or of the wrong type, a quantity out of bounds) and a command
the service refuses (an unknown batch) are logged on
`examples.allocation.channels` and dropped: never a crash.

Every `Allocated` event the log records is published on the channel
`line_allocated` as its JSON (`{"orderid", "sku", "qty", "batchref"}`), by an
`OutboxRelay` over `LineAllocatedPublisher`: from the log, once committed,
never from inside a handler, so a command that rolls back publishes nothing.
The relay keeps its checkpoint in the service's database and publishes, the
first time, the `Allocated` events already there.

Redis pub/sub keeps nothing: a message sent while nobody is subscribed is
gone, on both channels. The connections are kept by `AsyncRelayService` and
`AsyncConsumerService`, which connect again when Redis goes away.

`python -m examples.allocation serve --redis redis://127.0.0.1:6379` (or
`TIDINGS_REDIS_URL`) runs both inside the HTTP service; `tidings relay
examples.allocation.channels:relay` and `tidings consume
examples.allocation.channels:consumer` run each in a process of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import anyio
import msgspec

from examples.allocation.database import open_database
from examples.allocation.domain import Product
from examples.allocation.messages import Allocated, ChangeBatchQuantity
from examples.allocation.orm import MAX_QUANTITY, MAX_TEXT, PRINTABLE
from tidings import (
    AsyncEventStore,
    BrokerMessage,
    ConfigurationError,
    DomainError,
    MessageBus,
    OutboxRelay,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

REDIS_URL_ENV = "TIDINGS_REDIS_URL"
"""The environment variable naming the Redis server, which turns the channels on."""

CHANGE_BATCH_QUANTITY = "change_batch_quantity"
LINE_ALLOCATED = "line_allocated"
RELAY_NAME = "redis-line-allocated"
"""The relay's name: its checkpoint in the projections table, its line in `tidings projections`."""

logger = logging.getLogger("examples.allocation.channels")


def redis_url() -> str | None:
    """The Redis URL of `TIDINGS_REDIS_URL`, or None: the channels are off."""
    return os.environ.get(REDIS_URL_ENV) or None


class BatchQuantityChange(msgspec.Struct, forbid_unknown_fields=True):
    """A message of `change_batch_quantity`, as the book's services send it."""

    batchref: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, pattern=PRINTABLE)]
    qty: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUANTITY)]


_changes = msgspec.json.Decoder(BatchQuantityChange)


async def _connected(url: str) -> aioredis.Redis:
    # Imported here: the service without Redis needs no Redis client (the `redis` extra).
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


class LineAllocatedPublisher:
    """Publishes each `Allocated` event's JSON on `line_allocated`; other events are not sent."""

    messaging_system = "redis"  # what its spans name, when traced

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def publish(self, message: BrokerMessage) -> None:
        if message.type_name == Allocated.__event_type__:
            await self.client.publish(LINE_ALLOCATED, message.body)

    async def aclose(self) -> None:
        await self.client.aclose()


class ChangeBatchQuantityConsumer:
    """Hands each message of `change_batch_quantity` to `bus` as a `ChangeBatchQuantity`.

    The bus is the service's blocking one: each command runs on a worker
    thread, one at a time, in the order received. `refused` counts the
    messages dropped (see the module).
    """

    name = CHANGE_BATCH_QUANTITY

    def __init__(self, client: aioredis.Redis, bus: MessageBus, *, wait: float = 0.5) -> None:
        self.client = client
        self.bus = bus
        self.wait = wait
        self.refused = 0
        self._stopped = False

    async def run(self) -> None:
        """Subscribe and hand messages over until `stop`; raises when Redis goes away."""
        self._stopped = False
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(CHANGE_BATCH_QUANTITY)
            while not self._stopped:
                received = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.wait
                )
                if received is not None:
                    await self.handle(received["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    def stop(self) -> None:
        """Finish the message in hand, then return from `run`."""
        self._stopped = True

    async def handle(self, data: bytes | str) -> None:
        """One message: its command handled, or the message logged and dropped."""
        raw = data.encode() if isinstance(data, str) else data
        try:
            change = _changes.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is one
            self.refused += 1
            logger.error("%s: dropped %r: %s", CHANGE_BATCH_QUANTITY, raw[:200], exc)
            return
        command = ChangeBatchQuantity(change.batchref, change.qty)
        try:
            await anyio.to_thread.run_sync(self.bus.handle, command)
        except DomainError as exc:
            self.refused += 1
            logger.error("%s: refused %s: %s", CHANGE_BATCH_QUANTITY, command, exc)
        except Exception:  # the service's own fault, or its store's: the next message may pass
            self.refused += 1
            logger.exception("%s: failed on %s", CHANGE_BATCH_QUANTITY, command)


def relaying(url: str) -> Callable[[AsyncEventStore], AbstractAsyncContextManager[OutboxRelay]]:
    """How `AsyncRelayService` connects the relay of `line_allocated` to Redis at `url`."""

    @asynccontextmanager
    async def connect(store: AsyncEventStore) -> AsyncIterator[OutboxRelay]:
        publisher = LineAllocatedPublisher(await _connected(url))
        try:
            yield OutboxRelay(publisher, name=RELAY_NAME, categories=[Product.category])
        finally:
            await publisher.aclose()

    return connect


def consuming(
    bus: MessageBus, url: str
) -> Callable[[AsyncEventStore], AbstractAsyncContextManager[ChangeBatchQuantityConsumer]]:
    """How `AsyncConsumerService` connects the consumer of `change_batch_quantity` to `url`."""

    @asynccontextmanager
    async def connect(store: AsyncEventStore) -> AsyncIterator[ChangeBatchQuantityConsumer]:
        client = await _connected(url)
        try:
            yield ChangeBatchQuantityConsumer(client, bus)
        finally:
            await client.aclose()

    return connect


def _required_url() -> str:
    url = redis_url()
    if url is None:
        raise ConfigurationError(f"set {REDIS_URL_ENV} to the Redis server: redis://HOST:PORT")
    return url


@asynccontextmanager
async def relay(store: AsyncEventStore) -> AsyncIterator[OutboxRelay]:
    """`tidings relay examples.allocation.channels:relay`: the relay, on `TIDINGS_REDIS_URL`."""
    async with relaying(_required_url())(store) as connected:
        yield connected


@asynccontextmanager
async def consumer(store: AsyncEventStore) -> AsyncIterator[ChangeBatchQuantityConsumer]:
    """`tidings consume examples.allocation.channels:consumer`, on the service's database.

    The service's handlers work on the database `TIDINGS_STORE` names (the
    command's `--store`), through its blocking SQL unit of work.
    """
    url = _required_url()
    database = await anyio.to_thread.run_sync(open_database)
    try:
        async with consuming(database.bus(), url)(store) as connected:
            yield connected
    finally:
        database.close()
