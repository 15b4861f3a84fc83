"""Stores and subscriptions as context managers: the block's end closes them, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.store.backends import BACKENDS, Opener
from tests.store.readable import readable, wait_readable
from tidings import Codec, Envelope, Event, StoreUnavailable
from tidings.subscriptions import AsyncSubscription, Subscription


@dataclass(frozen=True)
class Pinged(Event, type_name="closing.Pinged"):
    pass


CODEC = Codec(Pinged)


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    with BACKENDS[request.param](tmp_path) as found:
        yield found


def test_a_store_closes_at_the_end_of_its_with_block(opener: Opener) -> None:
    with opener(False) as store:
        store.append("Ping-1", [CODEC.new_event(Envelope.new(Pinged()))])
        wait_readable(store)
        with Subscription(store, batch_size=10) as subscription:
            assert [r.stream for r in subscription.read()] == ["Ping-1"]
    with pytest.raises(StoreUnavailable, match="closed"):
        store.read_all()


def test_an_async_store_closes_at_the_end_of_its_async_with_block(opener: Opener) -> None:
    async def main() -> None:
        async with opener(True) as store:
            await store.append("Ping-1", [CODEC.new_event(Envelope.new(Pinged()))])
            await readable(store)
            async with AsyncSubscription(store, batch_size=10) as subscription:
                assert [r.stream for r in await subscription.read()] == ["Ping-1"]
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.read_all()

    asyncio.run(main())
