"""The real brokers the transport tests run against: a binding on a namespace of its own."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

from tests.services import unavailable
from tidings.transports.binding import AsyncBinding

NATS_URL = os.environ.get("TIDINGS_TEST_NATS", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("TIDINGS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")

Connect = Callable[[str], AbstractAsyncContextManager[AsyncBinding]]
"""Opens a binding on a namespace (fresh names: `unique_namespace`), deleted when the block ends."""


def unique_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _reachable(service: str, url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(service, f"{host}:{port}: {exc}")


def nats_connect() -> Connect:
    """Skip (fail under CI) unless NATS answers at `NATS_URL` and its extra is installed."""
    try:
        from tidings.transports.nats import NatsBinding
    except ModuleNotFoundError as exc:
        unavailable("NATS", str(exc))
    _reachable("NATS", NATS_URL)

    @asynccontextmanager
    async def connect(namespace: str) -> AsyncIterator[AsyncBinding]:
        binding = await NatsBinding.connect(NATS_URL, namespace, ack_wait=2.0)
        try:
            yield binding
        finally:
            await binding.delete()
            await binding.aclose()

    return connect


def rabbitmq_connect(*, quorum: bool = False) -> Connect:
    """Skip (fail under CI) unless RabbitMQ answers at `RABBITMQ_URL`, its extra installed;
    with `quorum`, the binding's groups are quorum queues."""
    try:
        from tidings.transports.rabbitmq import RabbitMQBinding
    except ModuleNotFoundError as exc:
        unavailable("RabbitMQ", str(exc))
    _reachable("RabbitMQ", RABBITMQ_URL)

    @asynccontextmanager
    async def connect(namespace: str) -> AsyncIterator[AsyncBinding]:
        binding = await RabbitMQBinding.connect(RABBITMQ_URL, namespace, quorum=quorum)
        try:
            yield binding
        finally:
            await binding.delete()
            await binding.aclose()

    return connect


def redis_connect() -> Connect:
    """Skip (fail under CI) unless Redis answers at `REDIS_URL`, its extra installed."""
    try:
        from tidings.transports.redis import RedisStreamsBinding
    except ModuleNotFoundError as exc:
        unavailable("Redis", str(exc))
    _reachable("Redis", REDIS_URL)

    @asynccontextmanager
    async def connect(namespace: str) -> AsyncIterator[AsyncBinding]:
        binding = await RedisStreamsBinding.connect(REDIS_URL, namespace, ack_wait=2.0)
        try:
            yield binding
        finally:
            await binding.delete()
            await binding.aclose()

    return connect


CONNECTS: dict[str, Callable[[], Connect]] = {
    "nats": nats_connect,
    "rabbitmq": rabbitmq_connect,
    "redis": redis_connect,
}
"""Each broker's `Connect`, by the name the tests' parametrisation gives it."""


async def open_binding(broker: str, namespace: str) -> AsyncBinding:
    """A binding of `broker` ("nats", "rabbitmq", "redis") on `namespace`, for a test's process."""
    if broker == "redis":
        from tidings.transports.redis import RedisStreamsBinding

        return await RedisStreamsBinding.connect(REDIS_URL, namespace, ack_wait=2.0)
    if broker == "nats":
        from tidings.transports.nats import NatsBinding

        return await NatsBinding.connect(NATS_URL, namespace, ack_wait=2.0)
    from tidings.transports.rabbitmq import RabbitMQBinding

    return await RabbitMQBinding.connect(RABBITMQ_URL, namespace)
