"""What the Redis bindings do beyond the contract: dedupe by message id, pub/sub at most once."""

from __future__ import annotations

import asyncio

import pytest

from tests.transports.brokers import REDIS_URL, redis_connect, unique_namespace
from tests.transports.test_contract import drain, message

pytestmark = pytest.mark.brokers


def test_a_message_published_again_within_the_window_is_kept_once() -> None:
    connect = redis_connect()

    async def scenario() -> None:
        async with connect(unique_namespace()) as binding:
            receiver = await binding.receiver("g1")
            for n in (1, 2, 1, 3, 2):
                await binding.publish(message(n))
            got = await drain(receiver, 5, wait=1.0)
            assert [m.headers["n"] for m in got] == ["1", "2", "3"]
            await receiver.delete()

    asyncio.run(scenario())


def test_without_a_window_every_publication_is_kept() -> None:
    redis_connect()
    from tidings.transports.redis import RedisStreamsBinding

    async def scenario() -> None:
        binding = await RedisStreamsBinding.connect(REDIS_URL, unique_namespace(), dedupe_window=0)
        try:
            receiver = await binding.receiver("g1")
            for _ in range(2):
                await binding.publish(message(1))
            assert len(await drain(receiver, 3, wait=1.0)) == 2
        finally:
            await binding.delete()
            await binding.aclose()

    asyncio.run(scenario())
