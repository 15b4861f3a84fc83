"""Services a worker runs beside its projections: anything with `run` until `stop`.

An outbox relay or a broker consumer (`AsyncRelayService`,
`AsyncConsumerService`) is an `AsyncService`; so is a scheduler's loop
wrapped in one. `AsyncWorker(services=[...])` runs each as a task of its own
and stops them with it. The blocking `Worker` takes blocking services
(`Service`) and async ones alike: each async one runs on an event loop of
its own thread (`BlockingService`), since relays and consumers exist only
as async code.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Awaitable, Iterable
from typing import Protocol, cast, runtime_checkable

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = ["AsyncService", "BlockingService", "Service", "blocking"]


@runtime_checkable
class AsyncService(Protocol):
    """Runs until `stop` is called; `stop` returns at once, `run` once the work in hand is done."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Service(Protocol):
    """What the blocking `Worker` runs: a blocking `run` (until `stop`), or an `AsyncService`.

    An async one runs on an event loop of its own thread (`BlockingService`).
    """

    def run(self) -> Awaitable[None] | None: ...

    def stop(self) -> None: ...


def blocking(services: Iterable[Service]) -> list[BlockingService]:
    """Each service, to be run by a thread of its own."""
    return [BlockingService(service) for service in services]


class BlockingService:
    """A blocking or async service, run by a thread: an async one on an event loop of its own.

    `stop` may be called from any thread (a signal handler's, the worker's),
    before `run`, during it, or after; an async service's own `stop` is then
    called on its event loop, once its `run` has begun.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self._is_async = inspect.iscoroutinefunction(service.run)
        self._portal: BlockingPortal | None = None
        self._stopping: anyio.Event | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def run(self) -> None:
        """Run the service in this thread until `stop`."""
        if not self._is_async:
            if not self._stopped:
                self.service.run()
            return
        with start_blocking_portal() as portal:
            stopping = portal.call(anyio.Event)
            with self._lock:
                if self._stopped:
                    return
                self._portal, self._stopping = portal, stopping
            try:
                portal.call(self._serve, stopping)
            finally:
                with self._lock:
                    self._portal = self._stopping = None

    async def _serve(self, stopping: anyio.Event) -> None:
        async with anyio.create_task_group() as tasks:

            async def serve() -> None:
                try:
                    await cast(AsyncService, self.service).run()
                finally:
                    tasks.cancel_scope.cancel()  # it ended by itself: nothing left to stop

            tasks.start_soon(serve)
            await stopping.wait()
            self.service.stop()

    def stop(self) -> None:
        """Make `run` return once the service has finished what it has in hand."""
        with self._lock:
            self._stopped = True
            portal, stopping = self._portal, self._stopping
        if portal is None or stopping is None:
            if not self._is_async:
                self.service.stop()
            return
        with contextlib.suppress(RuntimeError):  # its loop has ended: `run` is returning
            portal.call(stopping.set)
