"""What each service runs: its store, its bus, a relay of its log, a consumer of the other's.

A service publishes its own log to the JetStream stream of its own
namespace (`OutboxRelay`) and receives the other service's stream as a
durable consumer group named after itself (`AsyncBrokerConsumer`), through
an inbox in its own store: a redelivered message changes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from examples.shipping.contracts import CODEC
from tidings import (
    AsyncBrokerConsumer,
    AsyncInbox,
    AsyncInboxUnitOfWork,
    AsyncMessageBus,
    AsyncProjectionRunner,
    AsyncSQLDeadLetters,
    AsyncSQLiteStore,
    OutboxRelay,
)
from tidings.transports.nats import NatsBinding

BuildBus = Callable[["Node"], AsyncMessageBus]
"""Makes a service's bus from its node (its store, inbox and connections)."""


@dataclass
class Node:
    """One running service: `name`, its store, and the bindings it publishes and receives on."""

    name: str
    store: AsyncSQLiteStore
    own: NatsBinding
    peer: NatsBinding
    inbox: AsyncInbox
    dead_letters: AsyncSQLDeadLetters
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    consumer: AsyncBrokerConsumer | None = None
    runner: AsyncProjectionRunner | None = None
    bus: AsyncMessageBus | None = None

    def unit_of_work(self) -> AsyncInboxUnitOfWork:
        """A unit of work that records the message being received, when there is one."""
        return AsyncInboxUnitOfWork(self.store, self.inbox, codec=CODEC)

    @classmethod
    async def open(cls, name: str, directory: Path, nats_url: str, own: str, peer: str) -> Node:
        """Open `name`'s store in `directory` and connect to its namespace `own` and `peer`'s."""
        store = AsyncSQLiteStore(str(directory / f"{name}.db"))
        own_binding = await NatsBinding.connect(nats_url, own)
        peer_binding = await NatsBinding.connect(nats_url, peer)
        return cls(
            name,
            store,
            own_binding,
            peer_binding,
            AsyncInbox(store, name),
            AsyncSQLDeadLetters(store, codec=CODEC),
        )

    async def start(self, build_bus: BuildBus, receives: Collection[str]) -> None:
        """Relay the log to `own`, and consume the categories `receives` of `peer`."""
        self.bus = build_bus(self)
        relay = OutboxRelay(self.own, name=f"{self.name}-outbox")
        self.runner = AsyncProjectionRunner(self.store, [relay], codec=CODEC, poll_interval=0.2)
        receiver = await self.peer.receiver(self.name, categories=receives)
        self.consumer = AsyncBrokerConsumer(receiver, self.bus, self.inbox, codec=CODEC, wait=0.2)
        await self.inbox.prepare()
        self.tasks = [
            asyncio.create_task(self.runner.run(), name=f"{self.name} relay"),
            asyncio.create_task(self.consumer.run(), name=f"{self.name} consumer"),
        ]

    async def stop(self, *, delete: bool = False) -> None:
        """Let the relay and the consumer finish what they hold, then close everything.

        With `delete`, the node's stream and its group on the peer's stream
        are deleted from the broker first, with what they hold.
        """
        if self.consumer is not None:
            self.consumer.stop()
        if self.runner is not None:
            self.runner.stop()
        for task in self.tasks:
            await task
        if self.consumer is not None:
            receiver = self.consumer.receiver
            await (receiver.delete() if delete else receiver.aclose())
        if delete:
            await self.own.delete()
        await self.own.aclose()
        await self.peer.aclose()
        await self.store.aclose()
