"""The relay or the consumer of the end-to-end test, each in a process of its own, until killed.

`python -m tests.transports.service relay BROKER NAMESPACE PRODUCER_URL`
`python -m tests.transports.service consume BROKER NAMESPACE CONSUMER_URL [DIE_AFTER]`

With DIE_AFTER, the consumer SIGKILLs itself once it has handled that many
messages, right after the handler's commit and before the consumer records
or acks the message: the moment a redelivery must not bill twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tests.transports.app import CODEC
from tests.transports.billing import billing_bus, prepare
from tests.transports.brokers import open_binding
from tidings import AsyncMiddleware, Envelope, Message
from tidings.projections import AsyncProjectionRunner
from tidings.store.urls import open_async_store
from tidings.transports import AsyncBrokerConsumer, AsyncInbox, OutboxRelay


async def relay(broker: str, namespace: str, url: str) -> None:
    store = open_async_store(url)
    binding = await open_binding(broker, namespace)
    runner = AsyncProjectionRunner(
        store, [OutboxRelay(binding, name="outbox")], codec=CODEC, poll_interval=0.05, lease=1.0
    )
    print("running", flush=True)
    await runner.run()


def dying_after(handled: int) -> AsyncMiddleware:
    count = 0

    async def middleware(
        envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
    ) -> Any:
        nonlocal count
        result = await call_next(envelope)
        count += 1
        if count >= handled:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return middleware


async def consume(broker: str, namespace: str, url: str, die_after: int | None) -> None:
    store = open_async_store(url)
    await prepare(store)
    inbox = AsyncInbox(store, "billing")
    binding = await open_binding(broker, namespace)
    receiver = await binding.receiver("billing")
    middleware = [] if die_after is None else [dying_after(die_after)]
    bus = billing_bus(store, inbox, middleware)
    consumer = AsyncBrokerConsumer(receiver, bus, inbox, codec=CODEC, batch_size=10, wait=0.2)
    print("running", flush=True)
    await consumer.run()


if __name__ == "__main__":
    role, broker, namespace, url = sys.argv[1:5]
    if role == "relay":
        asyncio.run(relay(broker, namespace, url))
    else:
        die_after = int(sys.argv[5]) if len(sys.argv) > 5 else None
        asyncio.run(consume(broker, namespace, url, die_after))
