"""An application's relay and consumer as `tidings relay` and `tidings consume` load them.

The broker is `TIDINGS_TEST_BROKER` (a `redis://` or `nats://` URL) and the
namespace `TIDINGS_TEST_NAMESPACE`: the tests start brokers of their own on
free ports. The consumer bills each order placed in its own store
(`tests.transports.billing`), so its rows show every effect and any repeat.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.transports.app import CODEC
from tests.transports.billing import billing_bus, prepare
from tidings import AsyncBrokerConsumer, AsyncInbox, OutboxRelay, Retry
from tidings.transports.binding import AsyncBinding

BROKER_ENV = "TIDINGS_TEST_BROKER"
NAMESPACE_ENV = "TIDINGS_TEST_NAMESPACE"


async def connect_binding() -> AsyncBinding:
    url, namespace = os.environ[BROKER_ENV], os.environ[NAMESPACE_ENV]
    if url.startswith("nats://"):
        from tidings.transports.nats import NatsBinding

        return await NatsBinding.connect(url, namespace, ack_wait=2.0)
    from tidings.transports.redis import RedisStreamsBinding

    return await RedisStreamsBinding.connect(url, namespace, ack_wait=2.0)


class QuickRelay(OutboxRelay):
    """Parks after a second of failed publications, where the default retries for longer."""

    retry = Retry(attempts=3, first_delay=0.1, max_delay=0.5)


@asynccontextmanager
async def relay(store: Any) -> AsyncIterator[OutboxRelay]:
    binding = await connect_binding()
    try:
        yield QuickRelay(binding, name="outbox")
    finally:
        await binding.aclose()


@asynccontextmanager
async def consumer(store: Any) -> AsyncIterator[AsyncBrokerConsumer]:
    await prepare(store)
    inbox = AsyncInbox(store, "billing")
    binding = await connect_binding()
    try:
        receiver = await binding.receiver("billing")
        yield AsyncBrokerConsumer(
            receiver, billing_bus(store, inbox), inbox, codec=CODEC, batch_size=10, wait=0.2
        )
    finally:
        await binding.aclose()


not_a_function = 42
