"""The worker of one projection: becomes its one runner, processes it, starts over when fenced."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tidings.projections._async.base import Fenced
from tidings.projections._async.processing import AsyncProjectionProcessing

if TYPE_CHECKING:
    from tidings.projections._async.locks import AsyncAdvisoryLock

__all__ = ["AsyncProjectionWorkers"]

logger = logging.getLogger("tidings.projections")


class AsyncProjectionWorkers(AsyncProjectionProcessing):
    """Runs each projection, until `stop`, while this runner holds its lease (or lock)."""

    async def _work(self, name: str) -> None:
        lock = self._advisory_lock(name)
        while not self._stopped:
            try:
                if await self._take(name, lock):
                    self._working.add(name)
                    try:
                        await self._follow(name, self.projections[name], lock=lock)
                    finally:
                        self._working.discard(name)
                else:
                    await self._sleep(min(self.poll_interval, self.lease / 3))
            except Fenced:
                continue
            except Exception:
                logger.exception("projection %s: the runner failed; starting over", name)
                await self._sleep(self.poll_interval)
        try:
            async with self.store.transaction() as tx:
                await self.checkpoints.release(tx, name, self.owner)
        except Exception:
            logger.exception("projection %s: could not give the lease back", name)
        if lock is not None:
            await lock.release()

    def _advisory_lock(self, name: str) -> AsyncAdvisoryLock | None:
        """On PostgreSQL, the session lock that makes a runner the one of `name`."""
        if not self.checkpoints.postgres:
            return None
        from tidings.projections._async.locks import AsyncAdvisoryLock

        return AsyncAdvisoryLock(self.store.conninfo, self.store.schema, name)

    async def _take(self, name: str, lock: AsyncAdvisoryLock | None) -> bool:
        """Become the runner of `name`: by its advisory lock on PostgreSQL, else by lease."""
        if lock is None:
            return await self._claim(name)
        if not await lock.acquire():
            return False
        # Whoever held the lock before is gone: its lease counts for nothing.
        async with self.store.transaction() as tx:
            taken = await self.checkpoints.claim(tx, name, self.owner, self.lease, take_over=True)
        return taken
