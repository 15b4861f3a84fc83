"""Running projections from the log: batches while catching up, live after, one runner each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio  # sync: from tidings.projections.threads import TaskThreads

from tidings.projections._async.base import Progress, call
from tidings.projections._async.letter_actions import AsyncLetterActions
from tidings.projections._async.rebuilds import AsyncRebuilds
from tidings.projections._async.status import AsyncRunnerStatus
from tidings.projections._async.watermarks import AsyncWatermarkWatch
from tidings.projections._async.workers import AsyncProjectionWorkers
from tidings.projections.partitions import PartitionsChanged
from tidings.projections.projection import ProjectionState
from tidings.subscriptions.listener import watch_commits

__all__ = ["AsyncProjectionRunner", "Progress"]


class AsyncProjectionRunner(
    AsyncProjectionWorkers,
    AsyncRebuilds,
    AsyncRunnerStatus,
    AsyncLetterActions,
    AsyncWatermarkWatch,
):
    """Runs many projections over one store, each from its own checkpoint.

    While catching up, a projection handles up to `batch_size` events per
    transaction (on SQLite, as many as fit a `write_turn` of the store's
    write lock, with a pause after each: see `tidings.projections.turns`;
    on PostgreSQL, reading the next batch while it handles one: see
    `tidings.projections._async.readahead`); live, it wakes on each commit
    (see `AsyncSubscription`).
    Each projection is run by one runner at a time across processes: a
    runner takes a lease on it (renewed every `lease / 3` seconds) and every
    checkpoint write is fenced by owner and position, so a runner whose
    lease was taken over, or whose projection was paused or rebuilt, rolls
    its batch back instead of writing twice. A runner that dies is replaced
    once its lease has run out; on PostgreSQL at once, as runners there take
    a session advisory lock per projection first, which the server frees
    when the holder's connection drops.

    A projection with `partitions` above 1 has a checkpoint and a lease per
    partition instead, each with a fencing token raised on every takeover and
    checked by every checkpoint write: runners in many processes share its
    partitions out (see `tidings.projections._async.workers`), each
    partition's events handled in order by one of them at a time. A runner
    processes at most `concurrency` batches at once (None: no limit).

    A failing handler is retried by its projection's `retry` policy
    (`retry_waits=False` skips the waits), then, by `on_failure`, the
    projection is parked with its error while the others run on, or it moves
    on. Either way the event becomes a dead letter of handler
    `projection:<name>` in `dead_letters`, the store the bus uses (in the
    log's database, `SQLDeadLetters`; in memory beside a memory store),
    written in the transaction that parks the projection or moves it on. A
    parked projection's letter is marked `parked` and lasts while it is
    parked: `resume` tries the event again, `skip` drops it.

    When an open transaction has held the store's readers back for
    `held_back_warning` seconds (on PostgreSQL, see `EventStore.watermark`),
    the runner logs a warning on `tidings.projections`; `status()` shows it
    at any time.
    """

    # Running.

    async def prepare(self) -> None:
        """Create the projections table, each projection's rows and read model (`setup`).

        Raises `PartitionsChanged` for a projection whose rows record another
        partition count than it has now.
        """
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            for name, projection in self.projections.items():
                for row in await self.checkpoints.load_of(tx, name):
                    if row.partitions != projection.partitions:
                        raise PartitionsChanged(name, row.partitions, projection.partitions)
                for key in self._keys(name):
                    await self.checkpoints.add(tx, key, partitions=projection.partitions)
                await call(projection.setup, tx)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AsyncProjectionRunner]:
        """Run every projection in the background until the block ends, or `stop` is called."""
        await self.prepare()
        self._stopped = self._stop_asked  # a stop asked before, or during `prepare`, stands
        self._new_slots()
        await self._beat()  # the runners to share partitions with, before claiming any
        stop_watching = watch_commits(self.store, self._commits)
        try:
            async with anyio.create_task_group() as tasks:  # sync: with TaskThreads() as tasks:
                for key in self._partitions:
                    tasks.start_soon(self._work, key)
                tasks.start_soon(self._balance)
                tasks.start_soon(self._watch_watermark)
                try:
                    yield self
                finally:
                    self._halt()
        finally:
            stop_watching()

    async def run(self) -> None:
        """Run every projection until `stop` is called; at once, if it was called before."""
        if self._stop_asked:
            return
        async with self.running():
            while not self._stopped:
                await self._wait_changes(self._changes.count, 1.0)

    def held(self) -> list[str]:
        """The projections and partitions (`<name>#<index>`) this runner processes now."""
        return sorted(self._working)

    def stop(self) -> None:
        """Ask the workers to finish their batch, give their leases back, and `run` to return.

        Final: a stop that comes before `run` begins, or while it prepares,
        makes it return without processing anything, and a later `run` or
        `running` block processes nothing either (make a new runner to run
        again), so a shutdown signal that arrives early is never lost.
        """
        self._stop_asked = True
        self._halt()

    def _halt(self) -> None:
        """Make the workers finish their batch and give their leases back."""
        self._stopped = True
        self._commits.announce()
        self._changes.announce()

    # Control: like status, rebuilds and the dead letter actions, these work whether or not
    # this runner is running, and on other processes' runners.

    async def pause(self, name: str) -> None:
        """Stop processing `name` after its current batch, until `resume`.

        `name` is a projection (every partition of it), or one partition (`<name>#<index>`).
        """
        for key in self._keys(name):
            await self._set_state(key, ProjectionState.PAUSED)

    async def resume(self, name: str) -> None:
        """Run `name` again: paused, or parked (the failed event is tried again).

        `name` is a projection (every partition of it), or one partition (`<name>#<index>`).
        """
        for key in self._keys(name):
            await self._set_state(key, ProjectionState.RUNNING)
