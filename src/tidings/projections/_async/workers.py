"""The worker of one checkpoint row: holds its lease, processes it, starts over when fenced.

A projection that is not split has one row; a partitioned one a row per
partition, and then the runners running it share the partitions out: each
heartbeats a member row of the projection (`_balance`), and one holding more
than ceil(partitions / members) gives the surplus back, so a runner that joins
gets its share within a few lease periods and the partitions of one that
died are claimed once its leases have run out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from tidings.projections._async.base import Fenced, GiveBack
from tidings.projections._async.processing import AsyncProjectionProcessing
from tidings.projections.partitions import LeaseLost, Partition

if TYPE_CHECKING:
    from tidings.projections._async.locks import AsyncAdvisoryLock

__all__ = ["AsyncProjectionWorkers"]

logger = logging.getLogger("tidings.projections")


class AsyncProjectionWorkers(AsyncProjectionProcessing):
    """Runs each row, until `stop`, while this runner holds its lease (or lock)."""

    async def _work(self, key: str) -> None:
        part = self._partitions[key]
        lock = self._advisory_lock(key) if part.count == 1 else None
        while not self._stopped:
            try:
                if self._may_take(part) and await self._take(key, lock):
                    self._working.add(key)
                    self._held(part, True)
                    try:
                        await self._follow(key, self.projections[part.projection], lock=lock)
                    finally:
                        self._working.discard(key)
                        self._held(part, False)
                else:
                    await self._sleep(min(self.poll_interval, self.lease / 3))
            except GiveBack:
                await self._give_back(key)
                # Long enough for the runner short of partitions to claim this one.
                await self._sleep(self.lease / 3)
            except LeaseLost as exc:
                logger.warning("partition %s dropped: %s", key, exc)
            except Fenced:
                continue
            except Exception:
                logger.exception("projection %s: the runner failed; starting over", key)
                await self._sleep(self.poll_interval)
        await self._give_back(key)
        if lock is not None:
            await lock.release()

    async def _give_back(self, key: str) -> None:
        try:
            async with self.store.transaction() as tx:
                await self.checkpoints.release(tx, key, self.owner)
        except Exception:
            logger.exception("projection %s: could not give the lease back", key)

    def _may_take(self, part: Partition) -> bool:
        """Whether this runner holds less than its share of `part`'s projection."""
        if part.count == 1:
            return True
        share = self._shares.get(part.projection, part.count)
        held = sum(
            1
            for key in self._working
            if key in self._partitions and self._partitions[key].projection == part.projection
        )
        return held < share

    def _held(self, part: Partition, taken: bool) -> None:
        if part.count > 1:
            held = sorted(
                self._partitions[key].index
                for key in self._working
                if self._partitions[key].projection == part.projection
            )
            logger.info(
                "%s %s partition %d of %s; holds %s",
                self.owner,
                "took" if taken else "left",
                part.index,
                part.projection,
                held,
            )

    async def _balance(self) -> None:
        """Heartbeat this runner's membership of each partitioned projection, and share them."""
        split = [p for p in self.projections.values() if p.partitions > 1]
        if not split:
            return
        while not self._stopped:
            try:
                await self._beat()
            except Exception:
                logger.exception("projections: could not heartbeat this runner's membership")
            await self._sleep(self.lease / 3)
        try:
            async with self.store.transaction() as tx:
                for projection in split:
                    await self.checkpoints.leave(tx, projection.name, self.owner)
        except Exception:
            logger.exception("projections: could not leave the members of the projections")

    async def _beat(self) -> None:
        async with self.store.transaction() as tx:
            for projection in self.projections.values():
                if projection.partitions > 1:
                    members = await self.checkpoints.beat(
                        tx, projection.name, self.owner, self.lease
                    )
                    self._shares[projection.name] = -(-projection.partitions // max(members, 1))

    def _advisory_lock(self, name: str) -> AsyncAdvisoryLock | None:
        """On PostgreSQL, the session lock that makes a runner the one of `name`."""
        if not self.checkpoints.postgres:
            return None
        from tidings.projections._async.locks import AsyncAdvisoryLock
        from tidings.store._async.postgres import AsyncPostgresStore

        store = cast(AsyncPostgresStore, self.store)  # its checkpoints are PostgreSQL's
        return AsyncAdvisoryLock(store.conninfo, store.schema, name)

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
