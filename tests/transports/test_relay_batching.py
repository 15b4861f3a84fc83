"""The relay publishes a batch with several publications in flight, each stream's events in order.

Against each real broker: the relay's publisher is the broker's binding
wrapped to count what is in flight at once (overall and per stream) and to
fail the publications of chosen events, as a broker refusing them would.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.readable import readable
from tests.transports.app import CODEC, OpenStore, placed, store_opener
from tests.transports.brokers import Connect, unique_namespace
from tidings import ProjectionState, ProjectionStopped, Retry
from tidings.projections import AsyncProjectionRunner
from tidings.store import AsyncEventStore
from tidings.transports.binding import AsyncPublisher, AsyncReceiver, BrokerMessage
from tidings.transports.envelopes import decoded
from tidings.transports.relay import OutboxRelay

pytestmark = pytest.mark.brokers

STREAMS = 8
ROUNDS = 20


class Watched:
    """A publisher that counts the publications in flight, and fails those of `failing` ids."""

    def __init__(self, binding: AsyncPublisher) -> None:
        self.binding = binding
        self.failing: set[str] = set()
        self.in_flight: Counter[str] = Counter()
        self.published: Counter[str] = Counter()  # publications confirmed, by message id
        self.most = 0
        self.most_of_a_stream = 0

    async def publish(self, message: BrokerMessage) -> None:
        stream = message.headers["tidings-stream"]
        self.in_flight[stream] += 1
        self.most = max(self.most, self.in_flight.total())
        self.most_of_a_stream = max(self.most_of_a_stream, self.in_flight[stream])
        try:
            await asyncio.sleep(0.001)  # a broker's round trip, at the least
            if message.message_id in self.failing:
                raise ConnectionError("the broker refused it")
            await self.binding.publish(message)
            self.published[message.message_id] += 1
        finally:
            self.in_flight[stream] -= 1

    async def aclose(self) -> None:
        pass


def runner_of(store: AsyncEventStore, relay: OutboxRelay) -> AsyncProjectionRunner:
    """A runner quick to see new events, retrying failures without waiting."""
    return AsyncProjectionRunner(
        store, [relay], codec=CODEC, poll_interval=0.05, lease=5.0, retry_waits=False
    )


class QuickToPark(OutboxRelay):
    retry = Retry(attempts=2, first_delay=0.0, max_delay=0.0)


async def interleaved(store: AsyncEventStore) -> list[tuple[str, str, int]]:
    """`ROUNDS` events in each of `STREAMS` streams, the streams taking turns in the log:
    (message id, stream, position) of each, in log order."""
    for round_ in range(ROUNDS):
        async with store.transaction() as tx:
            for n in range(STREAMS):
                await tx.append(f"Order-{n}", [placed(f"{n}-{round_}")])
    await readable(store)  # on a shared PostgreSQL, until others' open transactions end
    return [(str(r.event_id), r.stream, r.position) for r in await store.read_all()]


async def drained(receiver: AsyncReceiver) -> list[tuple[str, str, int]]:
    """(message id, stream, position) of every message the group holds now, each acked."""
    got: list[tuple[str, str, int]] = []
    wait = 10.0
    while deliveries := await receiver.fetch(100, wait):
        for delivery in deliveries:
            envelope = decoded(delivery.message, CODEC)
            assert envelope.stream is not None and envelope.position is not None
            got.append((str(envelope.message_id), envelope.stream, envelope.position))
            await delivery.ack()
        wait = 1.0
    return got


def first_of_each(received: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """`received` without repeats, each message where it first arrived."""
    seen: set[str] = set()
    first = []
    for message in received:
        if message[0] not in seen:
            seen.add(message[0])
            first.append(message)
    return first


def by_stream(messages: list[tuple[str, str, int]]) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    for _id, stream, position in messages:
        positions.setdefault(stream, []).append(position)
    return positions


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[OpenStore]:
    with store_opener("sqlite", tmp_path) as opener:
        yield opener


async def relayed(
    broker: Connect, store: AsyncEventStore, max_in_flight: int
) -> tuple[Watched, list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """Relay an interleaved log through `broker`: the publisher, the log and what was received."""
    async with broker(unique_namespace()) as binding:
        receiver = await binding.receiver("everything")
        log = await interleaved(store)
        publisher = Watched(binding)
        relay = OutboxRelay(publisher, max_in_flight=max_in_flight)
        runner = runner_of(store, relay)
        async with runner.running():
            await runner.wait_for(relay.name, log[-1][2], timeout=30)
        got = await drained(receiver)
        await receiver.delete()
    await store.aclose()
    return publisher, log, got


def test_a_batch_is_published_concurrently_each_stream_in_order(
    broker: Connect, open_store: OpenStore
) -> None:
    async def scenario() -> None:
        publisher, log, got = await relayed(broker, open_store(), max_in_flight=6)
        # Several at once, never more than allowed, never two of one stream.
        assert 1 < publisher.most <= 6
        assert publisher.most_of_a_stream == 1
        # Every event once, each stream's in its log order.
        assert set(publisher.published.values()) == {1}
        assert sorted(got) == sorted(log)
        assert by_stream(got) == by_stream(log)

    asyncio.run(scenario())


def test_one_in_flight_publishes_in_log_order(broker: Connect, sqlite_store: OpenStore) -> None:
    async def scenario() -> None:
        publisher, log, got = await relayed(broker, sqlite_store(), max_in_flight=1)
        assert publisher.most == 1
        assert got == log

    asyncio.run(scenario())


def test_a_publication_failing_mid_batch_holds_the_checkpoint_before_it(
    broker: Connect, sqlite_store: OpenStore
) -> None:
    async def scenario() -> None:
        store = sqlite_store()
        async with broker(unique_namespace()) as binding:
            receiver = await binding.receiver("everything")
            log = await interleaved(store)
            failing = len(log) // 2
            failing_id, failing_stream, failing_position = log[failing]
            publisher = Watched(binding)
            publisher.failing.add(failing_id)
            relay = QuickToPark(publisher, max_in_flight=16)
            runner = runner_of(store, relay)
            async with runner.running():
                with pytest.raises(ProjectionStopped):  # parked on the failure
                    await runner.wait_for(relay.name, log[-1][2], timeout=30)
                (status,) = await runner.status()
                assert status.state == ProjectionState.PARKED
                # Parked on the failed event, the checkpoint just before it.
                assert status.failed_position == failing_position
                assert status.position == log[failing - 1][2]
                before = await drained(receiver)
                # Everything before it was published; nothing of its stream after it.
                assert {m[0] for m in log[:failing]} <= {m[0] for m in before}
                assert failing_id not in {m[0] for m in before}
                assert [
                    m for m in before if m[1] == failing_stream and m[2] > failing_position
                ] == []
                publisher.failing.clear()  # the broker is back
                await runner.resume(relay.name)
                await runner.wait_for(relay.name, log[-1][2], timeout=30)
            after = await drained(receiver)
            await receiver.delete()
        await store.aclose()
        # Nothing lost; what came after the failure may come twice, but each stream in order.
        received = first_of_each(before + after)
        assert sorted(received) == sorted(log)
        assert by_stream(received) == by_stream(log)

    asyncio.run(scenario())
