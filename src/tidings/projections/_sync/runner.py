# Generated from src/tidings/projections/_async/runner.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Running projections from the log: batches while catching up, live after, one runner each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tidings.projections.threads import TaskThreads

from tidings.projections._sync.base import Progress, call
from tidings.projections._sync.letter_actions import LetterActions
from tidings.projections._sync.rebuilds import Rebuilds
from tidings.projections._sync.status import RunnerStatus
from tidings.projections._sync.watermarks import WatermarkWatch
from tidings.projections._sync.workers import ProjectionWorkers
from tidings.projections.projection import ProjectionState
from tidings.subscriptions.listener import watch_commits

__all__ = ["ProjectionRunner", "Progress"]


class ProjectionRunner(
    ProjectionWorkers,
    Rebuilds,
    RunnerStatus,
    LetterActions,
    WatermarkWatch,
):
    """Runs many projections over one store, each from its own checkpoint.

    While catching up, a projection handles up to `batch_size` events per
    transaction; live, it wakes on each commit (see `Subscription`).
    Each projection is run by one runner at a time across processes: a
    runner takes a lease on it (renewed every `lease / 3` seconds) and every
    checkpoint write is fenced by owner and position, so a runner whose
    lease was taken over, or whose projection was paused or rebuilt, rolls
    its batch back instead of writing twice. A runner that dies is replaced
    once its lease has run out; on PostgreSQL at once, as runners there take
    a session advisory lock per projection first, which the server frees
    when the holder's connection drops.

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

    def prepare(self) -> None:
        """Create the projections table, each projection's row and read model (`setup`)."""
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            for name, projection in self.projections.items():
                self.checkpoints.add(tx, name)
                call(projection.setup, tx)

    @contextmanager
    def running(self) -> Iterator[ProjectionRunner]:
        """Run every projection in the background until the block ends."""
        self.prepare()
        self._stopped = False
        stop_watching = watch_commits(self.store, self._commits)
        try:
            with TaskThreads() as tasks:
                for name in self.projections:
                    tasks.start_soon(self._work, name)
                tasks.start_soon(self._watch_watermark)
                try:
                    yield self
                finally:
                    self.stop()
        finally:
            stop_watching()

    def run(self) -> None:
        """Run every projection until `stop` is called."""
        with self.running():
            while not self._stopped:
                self._wait_changes(self._changes.count, 1.0)

    def stop(self) -> None:
        """Ask the workers to finish their batch and give their leases back."""
        self._stopped = True
        self._commits.announce()
        self._changes.announce()

    # Control: like status, rebuilds and the dead letter actions, these work whether or not
    # this runner is running, and on other processes' runners.

    def pause(self, name: str) -> None:
        """Stop processing `name` after its current batch, until `resume`."""
        self._get(name)
        self._set_state(name, ProjectionState.PAUSED)

    def resume(self, name: str) -> None:
        """Run `name` again: paused, or parked (the failed event is tried again)."""
        self._get(name)
        self._set_state(name, ProjectionState.RUNNING)
