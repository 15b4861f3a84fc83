# Generated from src/tidings/projections/_async/workers.py by tools/unasync.py: edit that file, then run `make unasync`.
"""The worker of one projection: becomes its one runner, processes it, starts over when fenced."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tidings.projections._sync.base import Fenced
from tidings.projections._sync.processing import ProjectionProcessing

if TYPE_CHECKING:
    from tidings.projections._sync.locks import AdvisoryLock

__all__ = ["ProjectionWorkers"]

logger = logging.getLogger("tidings.projections")


class ProjectionWorkers(ProjectionProcessing):
    """Runs each projection, until `stop`, while this runner holds its lease (or lock)."""

    def _work(self, name: str) -> None:
        lock = self._advisory_lock(name)
        while not self._stopped:
            try:
                if self._take(name, lock):
                    self._working.add(name)
                    try:
                        self._follow(name, self.projections[name], lock=lock)
                    finally:
                        self._working.discard(name)
                else:
                    self._sleep(min(self.poll_interval, self.lease / 3))
            except Fenced:
                continue
            except Exception:
                logger.exception("projection %s: the runner failed; starting over", name)
                self._sleep(self.poll_interval)
        try:
            with self.store.transaction() as tx:
                self.checkpoints.release(tx, name, self.owner)
        except Exception:
            logger.exception("projection %s: could not give the lease back", name)
        if lock is not None:
            lock.release()

    def _advisory_lock(self, name: str) -> AdvisoryLock | None:
        """On PostgreSQL, the session lock that makes a runner the one of `name`."""
        if not self.checkpoints.postgres:
            return None
        from tidings.projections._sync.locks import AdvisoryLock

        return AdvisoryLock(self.store.conninfo, self.store.schema, name)

    def _take(self, name: str, lock: AdvisoryLock | None) -> bool:
        """Become the runner of `name`: by its advisory lock on PostgreSQL, else by lease."""
        if lock is None:
            return self._claim(name)
        if not lock.acquire():
            return False
        # Whoever held the lock before is gone: its lease counts for nothing.
        with self.store.transaction() as tx:
            taken = self.checkpoints.claim(tx, name, self.owner, self.lease, take_over=True)
        return taken
