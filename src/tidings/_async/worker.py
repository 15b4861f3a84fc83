"""What an application runs in the background, declared in one object and run by `tidings worker`.

::

    worker = AsyncWorker(
        store,
        projections=[OrderSummary(), *durable_handlers(router, partitions=8)],
        processes=[processes],
        schedulers=[scheduler],
        concurrency=4,
    )
    await worker.run()  # until `stop`

Its projections, durable handlers and process managers run in one projection
runner; a partitioned projection (`Projection.partitions`) is shared out
among all the workers running it, in this process or on other machines, by
fenced leases in the store (see `AsyncProjectionRunner`). Its schedulers
deliver what is due. Its services run beside them: anything with `run` and
`stop` (see `tidings.background`), such as the outbox relays and broker
consumers of AsyncRelayService and AsyncConsumerService.
`stop` (on SIGTERM or SIGINT, under `tidings worker`)
lets each finish its batch and gives the leases back.
"""

from __future__ import annotations

# sync: import threading
import logging
from collections.abc import Iterable

import anyio  # sync: from tidings.projections.threads import TaskThreads

from tidings import background
from tidings.codec import Codec
from tidings.projections._async.runner import AsyncProjectionRunner
from tidings.projections.projection import Projection
from tidings.sagas._async.processes import AsyncProcesses
from tidings.sagas._async.sagas import AsyncSagaRunner
from tidings.sagas.saga import SagaRecoveryFailed
from tidings.scheduling._async.scheduler import AsyncScheduler
from tidings.store._async.base import AsyncReadModelStore, AsyncReadModelTransaction

__all__ = ["AsyncWorker"]

logger = logging.getLogger("tidings.worker")


class AsyncWorker:
    """The projections, durable handlers, process managers, schedulers and services of one app.

    Each saga runner in `sagas` is recovered when the worker starts: the
    orchestrated sagas a stopped or crashed process left unfinished run on
    (`AsyncSagaRunner.recover`; two workers doing so at once is safe, their
    steps share one idempotency key).

    A relay or consumer in `services` keeps its own connection and
    checkpoint (AsyncRelayService runs its relay in a runner of its own, one
    process at a time holding it), so every worker may declare it. The
    blocking worker runs an async service on an event loop of its own thread.

    `concurrency` bounds the batches processed at once (None: one per
    partition held); `lease`, `batch_size` and `poll_interval` are the
    projection runner's (`AsyncProjectionRunner`).
    """

    def __init__(
        self,
        store: AsyncReadModelStore,
        *,
        projections: Iterable[Projection[AsyncReadModelTransaction]] = (),
        processes: Iterable[AsyncProcesses] = (),
        schedulers: Iterable[AsyncScheduler] = (),
        services: Iterable[background.AsyncService] = (),
        sagas: Iterable[AsyncSagaRunner] = (),
        concurrency: int | None = None,
        lease: float = 10.0,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        codec: Codec | None = None,
    ) -> None:
        everything = [*projections]
        for process in processes:
            everything.extend(process.projections())
        self.store = store
        self.runner = AsyncProjectionRunner(
            store,
            everything,
            codec=codec,
            batch_size=batch_size,
            poll_interval=poll_interval,
            lease=lease,
            concurrency=concurrency,
        )
        self.schedulers = list(schedulers)
        self.services = list(services)  # sync: self.services = background.blocking(services)
        self.sagas = list(sagas)
        self.poll_interval = poll_interval
        self._stopped = False
        self._stopping: anyio.Event | None = None  # sync: self._stopping = threading.Event()

    @property
    def owner(self) -> str:
        """How this worker is named in the leases it holds (host, process, runner)."""
        return self.runner.owner

    def held(self) -> list[str]:
        """The projections and partitions (`<name>#<index>`) this worker processes now."""
        return self.runner.held()

    async def prepare(self) -> None:
        """Create what the projections need; raises when the store cannot be reached."""
        await self.runner.prepare()

    async def run(self) -> None:
        """Run everything until `stop` is called; at once returns after `stop`, which is final.

        So a stop that comes while the worker is starting (a SIGTERM right
        after `prepare`) is not lost.
        """
        if self._stopped:
            return
        stopping = anyio.Event()  # sync: stopping = self._stopping
        self._stopping = stopping  # sync:
        async with anyio.create_task_group() as tasks:  # sync: with TaskThreads() as tasks:
            for scheduler in self.schedulers:
                tasks.start_soon(self._schedule, scheduler)
            for service in self.services:
                tasks.start_soon(service.run)
            for sagas in self.sagas:
                tasks.start_soon(self._recover, sagas)
            try:
                async with self.runner.running():
                    await stopping.wait()
            finally:
                self._stop_others()

    def stop(self) -> None:
        """Finish the batches under way, give the leases back, and return from `run`."""
        self._stopped = True
        if self._stopping is not None:
            self._stopping.set()
        self.runner.stop()
        self._stop_others()

    def _stop_others(self) -> None:
        for scheduler in self.schedulers:
            scheduler.stop()
        for service in self.services:
            service.stop()

    async def _recover(self, sagas: AsyncSagaRunner) -> None:
        """Run on the sagas a stopped or crashed process left unfinished; log those that fail."""
        try:
            await sagas.recover()
        except SagaRecoveryFailed as exc:
            for failure in exc.failures:
                logger.error(
                    "saga %s-%s: recovery failed: %s", failure.saga, failure.saga_id, failure.error
                )
        except Exception:
            logger.exception("sagas: recovery failed")

    async def _schedule(self, scheduler: AsyncScheduler) -> None:
        await scheduler.run(poll_interval=self.poll_interval)
