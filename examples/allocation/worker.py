"""What the allocation service runs in the background, for `tidings worker`.

::

    tidings worker examples.allocation.worker:worker --store sqlite:///var/tidings.db

Its worker keeps the stock desk's figures (`stock`, four partitions) from
the log and, when `TIDINGS_REDIS_URL` names a Redis server, runs the relay
of `line_allocated` and the consumer of `change_batch_quantity` (see
`channels`). `python -m examples.allocation serve` runs this same worker in
its own process, so `make run` needs nothing but SQLite; with
`serve --no-worker` the service leaves it to `tidings worker` processes
(on this machine or others, against one PostgreSQL store), which share the
partitions out. The relay is run by one process at a time (its lease); the
consumer by each worker, so with Redis pub/sub run one worker.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import anyio

from examples.allocation import channels, stock
from examples.allocation.database import open_database
from tidings import (
    AsyncConsumerService,
    AsyncRelayService,
    EventStore,
    MessageBus,
    Worker,
    open_async_store,
)
from tidings.store.urls import PostgresURL, parse_store_url

__all__ = ["NO_WORKER_ENV", "RedisChannels", "background", "runs_in_service", "worker"]

NO_WORKER_ENV = "ALLOCATION_NO_WORKER"
"""Set (to anything) by `serve --no-worker`: the HTTP service then runs no worker of its own."""


def runs_in_service() -> bool:
    """Whether the HTTP service runs the worker in its own process (unless `NO_WORKER_ENV`)."""
    return not os.environ.get(NO_WORKER_ENV)


class RedisChannels:
    """The relay to `line_allocated` and the consumer of `change_batch_quantity`, as a service.

    It opens its async store on the event loop it runs on (the worker runs it
    on one of its own), and closes it when stopped.
    """

    def __init__(self, store_url: str, redis_url: str, bus: MessageBus) -> None:
        self.store_url = store_url
        self.redis_url = redis_url
        self.bus = bus
        self._services: list[AsyncRelayService | AsyncConsumerService] = []
        self._stopped = False

    async def run(self) -> None:
        store = open_async_store(self.store_url)
        try:
            self._services = [
                AsyncRelayService(store, channels.relaying(self.redis_url), poll_interval=0.2),
                AsyncConsumerService(store, channels.consuming(self.bus, self.redis_url)),
            ]
            if self._stopped:
                return
            async with anyio.create_task_group() as tasks:
                for service in self._services:
                    tasks.start_soon(service.run)
        finally:
            await store.aclose()

    def stop(self) -> None:
        self._stopped = True
        for service in self._services:
            service.stop()


def background(
    store: EventStore, *, redis: RedisChannels | None = None, lease: float = 5.0
) -> Worker:
    """The worker on `store`: the stock figures, and the Redis channels when given."""
    return Worker(
        store,
        projections=stock.projections(store),
        services=[redis] if redis is not None else [],
        poll_interval=0.2,
        lease=lease,
    )


def worker(store: EventStore) -> Worker:
    """`tidings worker examples.allocation.worker:worker`, on the store `--store` opened.

    With `TIDINGS_REDIS_URL` set, the consumer's commands go to a bus over
    the service's database (the same one as `store`).
    """
    redis = channels.redis_url()
    if redis is None:
        return background(store)
    url = _url_of(store)
    return background(store, redis=RedisChannels(url, redis, open_database(url).bus()))


def _url_of(store: Any) -> str:
    """The store URL of `store`, a SQLite or PostgreSQL store."""
    schema, path = getattr(store, "schema", None), getattr(store, "path", None)
    if isinstance(schema, str):
        conninfo = str(store.conninfo)
        joint = "&" if "?" in conninfo else "?"
        found = parse_store_url(f"{conninfo}{joint}schema={quote(schema)}")
        assert isinstance(found, PostgresURL)
        return found.url
    if isinstance(path, str):
        return f"sqlite:///{path}"
    raise ValueError("the allocation service needs a sqlite:/// or postgresql:// store")
