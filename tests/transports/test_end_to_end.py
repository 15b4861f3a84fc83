"""Relay → broker → consumer in processes of their own, killed and restarted midway.

The producer's log holds orders; a relay process publishes them, a consumer
process bills each in its own store. Consumers are killed right after a
handler's commit, before the ack (three times), then at random moments
(twice); the relay is killed once. In the end every order is billed exactly
once: none lost, none twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transports.app import placed, store_url
from tests.transports.billing import billed
from tests.transports.brokers import CONNECTS, open_binding, unique_namespace
from tidings.dead_letters import AsyncSQLDeadLetters
from tidings.store.urls import open_async_store
from tidings.transports import AsyncInbox

pytestmark = pytest.mark.brokers

ROOT = Path(__file__).resolve().parents[2]
ORDERS_PER_WAVE = 100


@pytest.fixture(params=sorted(CONNECTS))
def broker(request: pytest.FixtureRequest) -> str:
    CONNECTS[request.param]()  # skip, or fail under CI
    return str(request.param)


@pytest.fixture(params=["sqlite", "postgres"])
def consumer_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path, "billing") as url:
        yield url


def start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.transports.service", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()


def test_every_order_is_billed_exactly_once_through_crashes(
    broker: str, consumer_url: str, tmp_path: Path
) -> None:
    namespace = unique_namespace()
    producer_url = f"sqlite:///{tmp_path / 'shop.db'}"

    async def make_group() -> None:
        binding = await open_binding(broker, namespace)
        receiver = await binding.receiver("billing")  # the queue exists before anything is sent
        await receiver.aclose()
        await binding.aclose()

    async def place_orders(wave: int) -> None:
        producer = open_async_store(producer_url)
        orders = [placed(f"{wave}-{n}", n) for n in range(ORDERS_PER_WAVE)]
        await producer.append(f"Order-{wave}", orders)
        await producer.aclose()

    async def handled() -> int:
        store = open_async_store(consumer_url)
        count = await AsyncInbox(store, "billing").count()
        await store.aclose()
        return count

    async def outcome() -> tuple[list[str], list[str], int]:
        producer, consumer = open_async_store(producer_url), open_async_store(consumer_url)
        placed_ids = [str(record.event_id) for record in await producer.read_all()]
        rows = await billed(consumer)
        letters = await AsyncSQLDeadLetters(consumer).count()
        await producer.aclose()
        await consumer.aclose()
        return placed_ids, rows, letters

    async def clean_up() -> None:
        binding = await open_binding(broker, namespace)
        await (await binding.receiver("billing")).delete()
        await binding.delete()
        await binding.aclose()

    asyncio.run(make_group())
    for wave in range(3):
        asyncio.run(place_orders(wave))
    relay = start("relay", broker, namespace, producer_url)
    consumer = start("consume", broker, namespace, consumer_url, "40")
    try:
        for _ in range(3):
            assert consumer.wait(timeout=60) == -signal.SIGKILL  # right after a commit
            consumer = start("consume", broker, namespace, consumer_url, "40")
        kill(consumer)
        consumer = start("consume", broker, namespace, consumer_url)
        kill(relay)
        asyncio.run(place_orders(3))
        relay = start("relay", broker, namespace, producer_url)
        moments = random.Random(7)
        for _ in range(2):
            time.sleep(moments.uniform(0.1, 0.5))
            kill(consumer)
            consumer = start("consume", broker, namespace, consumer_url)
        asyncio.run(place_orders(4))
        expected = 5 * ORDERS_PER_WAVE
        deadline = time.monotonic() + 90
        while asyncio.run(handled()) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        kill(relay)
        kill(consumer)
        asyncio.run(clean_up())
    placed_ids, rows, letters = asyncio.run(outcome())
    assert len(placed_ids) == expected
    assert Counter(rows) == Counter(placed_ids)  # each order billed once, none missing
    assert letters == 0  # redeliveries were recognised, not refused as failures
