"""Transports: the outbox relay, end-to-end latency and the inbox consumer, per broker, in one run.

Per broker (NATS JetStream, RabbitMQ, Redis Streams), side by side:

- **relay throughput**: events/s of `OutboxRelay`, run by an
  `AsyncProjectionRunner`, publishing a SQLite log of `--events` events over
  `--streams` streams (reading it, encoding each event, awaiting the
  broker's confirmation, committing its checkpoint), with up to 256
  publications in flight (its default, one per stream at a time) and one at
  a time, beside the same encoded messages published with the same
  acknowledgement by
  - the raw client (nats-py `js.publish` awaiting its PubAck; aio-pika on a
    publisher-confirm channel awaiting each confirm; redis-py `XADD`
    awaiting its reply, a connection per publication in flight), one after
    the other and with up to 256 in flight (any order: more than the relay,
    which keeps each stream's);
  - FastStream's broker `publish` (`NatsBroker` with `stream=`, awaiting
    the PubAck; `RabbitBroker`, publisher confirms on, persistent;
    `RedisBroker` with `stream=`), the same two ways.
  Each case publishes into a namespace of its own (so JetStream's
  duplicate window does not drop one case's messages as another's
  repeats); on RabbitMQ a durable queue is bound to it, so every message is
  stored.
- **end-to-end latency**: from an append's return (its commit) to the
  consumer's handler, p50 and p99, one event per commit at each of `--rates`
  events/s for `--seconds`, on each of `--stores` (SQLite files on the local
  disk, or PostgreSQL schemas at `TIDINGS_BENCH_POSTGRES`); the relay and
  the consumer (with its inbox in a store of its own) run in the producer's
  process, so one process makes every durable commit: the producer's, the
  relay's checkpoint's and the inbox's, on SQLite each inline on its event
  loop. Split into its parts: commit -> the relay's publication starts (its
  wake-up, reading the log), the broker's confirmation, publication -> the
  handler (delivery, the consumer's fetch and inbox query); with the
  process's CPU time over the run's, and the load average, since a process
  that gets less of a core than the pipeline needs falls behind whatever
  the design.
- **consumer throughput**: events/s of `AsyncBrokerConsumer` with its inbox
  (one inbox query and one durable SQLite commit per batch of up to 100,
  and with `batch_size=1` one of each per message) beside a loop that
  fetches, decodes, hands each message to the same bus and acks it, with
  no inbox; each reads the same `--events` messages through a group of its
  own. On Redis also with the batch's deliveries acked one `XACK` each,
  awaited one after the other, as before the consumer awaited a batch's
  acks at once (which the binding sends as one `XACK`).

Throughputs are the median of `--repeats` runs, the cases of a figure
interleaved run by run. SQLite files are on the local disk with durable
commits (`synchronous=FULL`).

Run: `uv run python -m benchmarks.transports [--broker nats|rabbitmq|redis|all]
[--parts relay,latency,consumer] [--stores sqlite,postgres]`
(FastStream is in the bench group: `uv sync --all-extras --group bench`).
A broker that does not answer is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

try:
    import aio_pika
    import nats
    import redis.asyncio as aioredis
    from faststream.nats import NatsBroker
    from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
    from faststream.redis import RedisBroker
    from nats.js.api import StorageType, StreamConfig
except ImportError as exc:
    raise SystemExit(f"{exc}: install the peers with `uv sync --all-extras --group bench`") from exc

from tidings import (
    AsyncBrokerConsumer,
    AsyncInbox,
    AsyncMessageBus,
    AsyncProjectionRunner,
    AsyncSQLiteStore,
    Codec,
    Envelope,
    Event,
    OutboxRelay,
    Router,
)
from tidings.store.urls import open_async_store
from tidings.transports import AsyncBinding, AsyncDelivery, AsyncReceiver, BrokerMessage
from tidings.transports.envelopes import decoded, encoded
from tidings.transports.nats import NatsBinding
from tidings.transports.rabbitmq import RabbitMQBinding
from tidings.transports.redis import (
    BODY_FIELD,
    SUBJECT_FIELD,
    RedisDelivery,
    RedisReceiver,
    RedisStreamsBinding,
)

NATS_URL = os.environ.get("TIDINGS_TEST_NATS", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("TIDINGS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_FLIGHT = 256  # the relay's default max_in_flight, and the peers' window
STREAMS = 100  # streams the events are spread over, by default


@dataclass(frozen=True)
class Ticked(Event, type_name="bench.Ticked"):
    n: int
    payload: str


CODEC = Codec(Ticked)


def tick(n: int) -> Ticked:
    return Ticked(n, "x" * 100)


def reachable(url: str) -> str | None:
    """None if something listens at `url`'s host and port, or why not."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout=2).close()
    except OSError as exc:
        return f"{parts.hostname}:{parts.port}: {exc}"
    return None


def fresh_namespace() -> str:
    return f"bench{uuid.uuid4().hex[:10]}"


# The brokers: a binding, the raw client, FastStream, on a fresh namespace each time.


Publish = Callable[[BrokerMessage], Awaitable[None]]
Field = bytes | bytearray | memoryview | str | int | float  # a Redis stream entry's key or value


class Broker:
    name: str

    async def binding(self, namespace: str) -> AsyncBinding:
        raise NotImplementedError

    @asynccontextmanager
    async def namespace(self) -> AsyncIterator[str]:
        """A fresh namespace where published messages are kept (a queue bound, on RabbitMQ)."""
        namespace = fresh_namespace()
        binding = await self.binding(namespace)
        sink = await binding.receiver("sink")
        try:
            yield namespace
        finally:
            await sink.delete()
            await binding.delete()
            await binding.aclose()

    def raw(self, namespace: str) -> AbstractAsyncContextManager[Publish]:
        """The raw client's confirmed publication into `namespace`."""
        raise NotImplementedError

    def faststream(self, namespace: str) -> AbstractAsyncContextManager[Publish]:
        """FastStream's broker `publish` into `namespace`, with the same acknowledgement."""
        raise NotImplementedError


class Nats(Broker):
    name = "NATS JetStream"

    async def binding(self, namespace: str) -> AsyncBinding:
        return await NatsBinding.connect(NATS_URL, namespace)

    @asynccontextmanager
    async def raw(self, namespace: str) -> AsyncIterator[Publish]:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        stream = f"TIDINGS_{namespace}"
        await js.add_stream(
            StreamConfig(name=stream, subjects=[f"{namespace}.>"], storage=StorageType.FILE)
        )

        async def publish(message: BrokerMessage) -> None:
            headers = {**message.headers, "Nats-Msg-Id": message.message_id}
            await js.publish(
                f"{namespace}.{message.subject}", message.body, headers=headers, stream=stream
            )

        try:
            yield publish
        finally:
            await client.close()

    @asynccontextmanager
    async def faststream(self, namespace: str) -> AsyncIterator[Publish]:
        broker = NatsBroker(NATS_URL)
        await broker.connect()
        stream = f"TIDINGS_{namespace}"

        async def publish(message: BrokerMessage) -> None:
            headers = {**message.headers, "Nats-Msg-Id": message.message_id}
            await broker.publish(
                message.body, f"{namespace}.{message.subject}", headers=headers, stream=stream
            )

        try:
            yield publish
        finally:
            await broker.stop()


class RabbitMQ(Broker):
    name = "RabbitMQ"

    async def binding(self, namespace: str) -> AsyncBinding:
        return await RabbitMQBinding.connect(RABBITMQ_URL, namespace)

    @asynccontextmanager
    async def raw(self, namespace: str) -> AsyncIterator[Publish]:
        connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            f"tidings.{namespace}", aio_pika.ExchangeType.TOPIC, durable=True
        )

        async def publish(message: BrokerMessage) -> None:
            await exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=dict(message.headers),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                ),
                routing_key=message.subject,
            )

        try:
            yield publish
        finally:
            await connection.close()

    @asynccontextmanager
    async def faststream(self, namespace: str) -> AsyncIterator[Publish]:
        broker = RabbitBroker(RABBITMQ_URL)
        await broker.connect()
        exchange = RabbitExchange(f"tidings.{namespace}", type=ExchangeType.TOPIC, durable=True)

        async def publish(message: BrokerMessage) -> None:
            await broker.publish(
                message.body,
                exchange=exchange,
                routing_key=message.subject,
                headers=dict(message.headers),
                persist=True,
                message_id=message.message_id,
            )

        try:
            yield publish
        finally:
            await broker.stop()


class Redis(Broker):
    name = "Redis Streams"

    async def binding(self, namespace: str) -> AsyncBinding:
        return await RedisStreamsBinding.connect(REDIS_URL, namespace)

    @asynccontextmanager
    async def raw(self, namespace: str) -> AsyncIterator[Publish]:
        # A connection per publication in flight: one connection has one command at a time.
        client = aioredis.Redis.from_url(REDIS_URL, max_connections=IN_FLIGHT)
        stream = f"tidings:{namespace}"

        async def publish(message: BrokerMessage) -> None:
            fields: dict[Field, Field] = {
                SUBJECT_FIELD: message.subject,
                BODY_FIELD: message.body,
            }
            fields.update(message.headers)
            await client.xadd(stream, fields)

        try:
            yield publish
        finally:
            await client.aclose()

    @asynccontextmanager
    async def faststream(self, namespace: str) -> AsyncIterator[Publish]:
        broker = RedisBroker(REDIS_URL, max_connections=IN_FLIGHT)
        await broker.connect()
        stream = f"tidings:{namespace}"

        async def publish(message: BrokerMessage) -> None:
            await broker.publish(message.body, stream=stream, headers=dict(message.headers))

        try:
            yield publish
        finally:
            await broker.stop()


async def windowed(publish: Publish, messages: Sequence[BrokerMessage], window: int) -> None:
    """Publish each message, with up to `window` publications awaiting their confirmation."""
    if window == 1:
        for message in messages:
            await publish(message)
        return
    slots = asyncio.Semaphore(window)

    async def one(message: BrokerMessage) -> None:
        try:
            await publish(message)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tasks:
        for message in messages:
            await slots.acquire()
            tasks.create_task(one(message))


# The log the relay publishes.


async def filled_store(path: Path, events: int, streams: int) -> AsyncSQLiteStore:
    store = AsyncSQLiteStore(str(path))
    per_commit = 100
    for first in range(0, events, per_commit):
        async with store.transaction() as tx:
            for n in range(first, min(first + per_commit, events)):
                envelope: Envelope[Event] = Envelope.new(tick(n))
                await tx.append(f"Tick-{n % streams}", [CODEC.new_event(envelope)])
    return store


async def relay_once(
    broker: Broker, store: AsyncSQLiteStore, run: int, max_in_flight: int
) -> float:
    async with broker.namespace() as namespace:
        binding = await broker.binding(namespace)
        relay = OutboxRelay(
            binding, name=f"relay-{run}-{max_in_flight}", max_in_flight=max_in_flight
        )
        runner = AsyncProjectionRunner(store, [relay], codec=CODEC, poll_interval=0.05)
        head = await store.head_position()
        start = time.perf_counter()
        async with runner.running():
            await runner.wait_for(relay.name, head, timeout=300)
        elapsed = time.perf_counter() - start
        await binding.aclose()
    return elapsed


async def relay_figures(
    broker: Broker, directory: Path, events: int, repeats: int, streams: int
) -> dict[str, float]:
    store = await filled_store(directory / f"relay-{broker.name}.db", events, streams)
    messages = [encoded(CODEC.envelope(r), CODEC) for r in await store.read_all()]

    def peer(
        client: Callable[[str], AbstractAsyncContextManager[Publish]], window: int
    ) -> Callable[[int], Awaitable[float]]:
        async def case(run: int) -> float:
            async with broker.namespace() as namespace, client(namespace) as publish:
                start = time.perf_counter()
                await windowed(publish, messages, window)
                return time.perf_counter() - start

        return case

    def relay(max_in_flight: int) -> Callable[[int], Awaitable[float]]:
        async def case(run: int) -> float:
            return await relay_once(broker, store, run, max_in_flight)

        return case

    cases = {
        f"relay, {IN_FLIGHT} in flight": relay(IN_FLIGHT),
        "relay, one at a time": relay(1),
        f"raw, {IN_FLIGHT} in flight": peer(broker.raw, IN_FLIGHT),
        "raw, one at a time": peer(broker.raw, 1),
        f"FastStream, {IN_FLIGHT} in flight": peer(broker.faststream, IN_FLIGHT),
        "FastStream, one at a time": peer(broker.faststream, 1),
    }
    rates: dict[str, list[float]] = {key: [] for key in cases}
    await relay(IN_FLIGHT)(-1)  # warm up: connections, the checkpoint table
    for run in range(repeats):
        for key, case in cases.items():
            rates[key].append(events / await case(run))
    await store.aclose()
    return {key: statistics.median(values) for key, values in rates.items()}


# End to end, and the consumer.


def recording_bus(seen: dict[int, float]) -> AsyncMessageBus:
    router = Router()

    @router.handler
    async def ticked(event: Ticked) -> None:
        seen.setdefault(event.n, time.perf_counter())

    return AsyncMessageBus(router, retry_waits=False)


class Timed:
    """The relay's binding, noting when each event's publication starts and is confirmed."""

    def __init__(self, binding: AsyncBinding, numbers: dict[str, int]) -> None:
        self.binding = binding
        self.numbers = numbers  # message id -> n
        self.sent: dict[int, float] = {}
        self.confirmed: dict[int, float] = {}

    async def publish(self, message: BrokerMessage) -> None:
        n = self.numbers[message.message_id]
        self.sent.setdefault(n, time.perf_counter())
        await self.binding.publish(message)
        self.confirmed.setdefault(n, time.perf_counter())

    async def aclose(self) -> None:
        await self.binding.aclose()


@asynccontextmanager
async def latency_stores(kind: str, directory: Path, name: str) -> AsyncIterator[Sequence[str]]:
    """The producer's and the consumer's store URLs: SQLite files, or PostgreSQL schemas."""
    if kind == "sqlite":
        yield [f"sqlite:///{directory / f'latency-{name}-{role}.db'}" for role in ("log", "inbox")]
        return
    import psycopg
    from psycopg import sql

    schemas = [f"bench_latency_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    try:
        yield [f"{POSTGRES_URL}?schema={schema}" for schema in schemas]
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@dataclass(frozen=True)
class Latency:
    """Commit -> handler, p50 and p99 in ms, and the same of each part of the way."""

    count: int
    total: tuple[float, float]
    parts: dict[str, tuple[float, float]]
    cpu: float
    """The process's CPU time over the run's wall time: 1.0 is one core, all along."""


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def latency(broker: Broker, directory: Path, rate: int, seconds: float, kind: str) -> Latency:
    """Commit -> handler at `rate` events/s for `seconds`, on `kind` stores, and its parts."""
    count = int(rate * seconds)
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    numbers: dict[str, int] = {}
    async with latency_stores(kind, directory, broker.name.split()[0]) as (log, inbox_url):
        producer = open_async_store(log)
        consumer_store = open_async_store(inbox_url)
        async with broker.namespace() as namespace:
            publishing = Timed(await broker.binding(namespace), numbers)
            receiving = await broker.binding(namespace)
            receiver = await receiving.receiver("latency")
            inbox = AsyncInbox(consumer_store, "latency")
            consumer = AsyncBrokerConsumer(
                receiver, recording_bus(seen), inbox, codec=CODEC, batch_size=100, wait=0.05
            )
            relay = OutboxRelay(publishing, name="relay")
            runner = AsyncProjectionRunner(producer, [relay], codec=CODEC, poll_interval=0.05)
            async with runner.running(), asyncio.TaskGroup() as tasks:
                consuming = tasks.create_task(consumer.run())
                await asyncio.sleep(0.5)  # everyone connected and waiting
                start, cpu_start = time.perf_counter(), time.process_time()
                for n in range(count):
                    delay = start + n / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    envelope: Envelope[Event] = Envelope.new(tick(n))
                    numbers[str(envelope.message_id)] = n
                    await producer.append(f"Tick-{n % STREAMS}", [CODEC.new_event(envelope)])
                    committed[n] = time.perf_counter()
                deadline = time.perf_counter() + 60
                while len(seen) < count and time.perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                cpu = (time.process_time() - cpu_start) / (time.perf_counter() - start)
                consumer.stop()
                await consuming
                runner.stop()
            await receiver.delete()
            await publishing.aclose()
            await receiving.aclose()
        await producer.aclose()
        await consumer_store.aclose()
    if len(seen) < count:
        raise SystemExit(f"{broker.name}: only {len(seen)} of {count} events arrived in time")
    ms = 1000.0
    sent, confirmed = publishing.sent, publishing.confirmed
    return Latency(
        count,
        percentiles([(seen[n] - committed[n]) * ms for n in range(count)]),
        {
            "commit -> relay publishes": percentiles(
                [(sent[n] - committed[n]) * ms for n in range(count)]
            ),
            "publish -> broker confirms": percentiles(
                [(confirmed[n] - sent[n]) * ms for n in range(count)]
            ),
            "publish -> handler": percentiles([(seen[n] - sent[n]) * ms for n in range(count)]),
        },
        cpu,
    )


class OneXackEach:
    """A Redis receiver whose deliveries are acked one `XACK` after the other, each awaited.

    How the consumer acked before it awaited a batch's acks at once (which
    the binding sends as one `XACK`): the figure's "before".
    """

    def __init__(self, receiver: RedisReceiver) -> None:
        self.receiver = receiver
        self._turn = asyncio.Lock()

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        return [OneXack(self, d) for d in await self.receiver.fetch(limit, wait)]

    async def ack(self, delivery: RedisDelivery) -> None:
        async with self._turn:
            await self.receiver.acknowledge([delivery.entry_id])

    async def delete(self) -> None:
        await self.receiver.delete()

    async def aclose(self) -> None:
        await self.receiver.aclose()


class OneXack:
    def __init__(self, receiver: OneXackEach, delivery: AsyncDelivery) -> None:
        assert isinstance(delivery, RedisDelivery)
        self._receiver, self._delivery = receiver, delivery

    @property
    def message(self) -> BrokerMessage:
        return self._delivery.message

    @property
    def redelivered(self) -> bool:
        return self._delivery.redelivered

    async def ack(self) -> None:
        await self._receiver.ack(self._delivery)

    async def nack(self) -> None:
        await self._delivery.nack()


async def consumer_figures(
    broker: Broker, directory: Path, events: int, repeats: int
) -> dict[str, float]:
    """Events/s of the consumer with its inbox (in batches, one at a time) and of a bare loop.

    On Redis also with an `XACK` per message (`OneXackEach`), beside the
    batch's one.
    """
    cases = {"with the inbox": 100, "with the inbox, one at a time": 1}
    if isinstance(broker, Redis):
        cases["with the inbox, XACK each"] = 100
    rates: dict[str, list[float]] = {key: [] for key in [*cases, "without the inbox"]}
    for run in range(repeats):
        namespace = fresh_namespace()
        binding = await broker.binding(namespace)
        groups: dict[str, AsyncReceiver] = {
            key: await binding.receiver(f"g{n}") for n, key in enumerate(rates)
        }
        if "with the inbox, XACK each" in groups:
            receiver = groups["with the inbox, XACK each"]
            assert isinstance(receiver, RedisReceiver)
            groups["with the inbox, XACK each"] = OneXackEach(receiver)
        for n in range(events):
            envelope: Envelope[Event] = Envelope.new(tick(n))
            await binding.publish(encoded(envelope.stored(f"Tick-{n % STREAMS}", 1, n + 1), CODEC))
        store = AsyncSQLiteStore(str(directory / f"consumer-{broker.name}-{run}.db"))
        for index, (key, batch_size) in enumerate(cases.items()):
            inbox = AsyncInbox(store, f"bench-{index}")
            await inbox.prepare()
            seen: dict[int, float] = {}
            consumer = AsyncBrokerConsumer(
                groups[key], recording_bus(seen), inbox, codec=CODEC, batch_size=batch_size
            )
            start = time.perf_counter()
            while len(seen) < events:
                await consumer.run_once()
            rates[key].append(events / (time.perf_counter() - start))
        plain: dict[int, float] = {}
        bus = recording_bus(plain)
        without = groups["without the inbox"]
        start = time.perf_counter()
        while len(plain) < events:
            for delivery in await without.fetch(100, 1.0):
                await bus.handle(decoded(delivery.message, CODEC))
                await delivery.ack()
        rates["without the inbox"].append(events / (time.perf_counter() - start))
        for group in groups.values():
            await group.delete()
        await binding.delete()
        await binding.aclose()
        await store.aclose()
    return {key: statistics.median(values) for key, values in rates.items()}


async def bench(
    brokers: list[Broker],
    events: int,
    repeats: int,
    rates: list[int],
    seconds: float,
    streams: int,
    stores: list[str],
    parts: set[str],
) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for broker in brokers:
            if "relay" in parts:
                await relay_part(broker, directory, events, repeats, streams)
            for rate in rates if "latency" in parts else []:
                for store in stores:
                    timed = await latency(broker, directory, rate, seconds, store)
                    p50, p99 = timed.total
                    print(
                        f"{broker.name}: commit -> handler at {rate:,} events/s"
                        f" ({timed.count} events, {store}): p50 {p50:.2f} ms, p99 {p99:.2f} ms,"
                        f" process CPU {timed.cpu:.0%} of a core, load {os.getloadavg()[0]:.1f}"
                    )
                    for part, (p50, p99) in timed.parts.items():
                        print(f"  {part:<28} p50 {p50:>8.2f} ms, p99 {p99:>8.2f} ms")
            if "consumer" in parts:
                await consumer_part(broker, directory, events, repeats)


async def relay_part(
    broker: Broker, directory: Path, events: int, repeats: int, streams: int
) -> None:
    print(
        f"\n{broker.name}: relay throughput, {events} events over {streams} streams,"
        f" median of {repeats} runs"
    )
    relayed = await relay_figures(broker, directory, events, repeats, streams)
    ours = relayed[f"relay, {IN_FLIGHT} in flight"]
    for key, value in relayed.items():
        print(f"  {key:<28} {value:>9,.0f} events/s   relay = {ours / value:.2f}x")


async def consumer_part(broker: Broker, directory: Path, events: int, repeats: int) -> None:
    consumed = await consumer_figures(broker, directory, events, repeats)
    plain = consumed["without the inbox"]
    print(f"{broker.name}: consumer throughput, {events} events, median of {repeats} runs")
    for key, value in consumed.items():
        print(f"  {key:<28} {value:>9,.0f} events/s   = {value / plain:.2f}x without")


BROKERS: dict[str, tuple[Callable[[], Broker], str]] = {
    "nats": (Nats, NATS_URL),
    "rabbitmq": (RabbitMQ, RABBITMQ_URL),
    "redis": (Redis, REDIS_URL),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transports")
    parser.add_argument("--broker", choices=[*BROKERS, "all"], default="all")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=STREAMS, help="streams of the events")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rates", default="200,1000", help="events/s of each latency run, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the latency runs")
    parser.add_argument(
        "--stores", default="sqlite,postgres", help="the latency runs' stores, comma-separated"
    )
    parser.add_argument(
        "--parts", default="relay,latency,consumer", help="which figures, comma-separated"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    brokers: list[Broker] = []
    for key, (make, url) in BROKERS.items():
        if args.broker not in (key, "all"):
            continue
        broker = make()
        reason = reachable(url)
        if reason is None:
            brokers.append(broker)
        else:
            print(f"{broker.name} skipped: not reachable at {reason}")
    rates = [int(rate) for rate in args.rates.split(",")]
    stores = args.stores.split(",")
    if "postgres" in stores and (reason := reachable(POSTGRES_URL)) is not None:
        print(f"PostgreSQL skipped: not reachable at {reason}")
        stores.remove("postgres")
    asyncio.run(
        bench(
            brokers,
            args.events,
            args.repeats,
            rates,
            args.seconds,
            args.streams,
            stores,
            set(args.parts.split(",")),
        )
    )


if __name__ == "__main__":
    main()
