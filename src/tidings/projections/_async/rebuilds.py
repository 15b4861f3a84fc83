"""Rebuilding a projection in place, or building a new version beside it and swapping it in."""

from __future__ import annotations

import time
from collections.abc import Callable

from tidings.projections._async.base import PROCESSING, Fenced, Progress, call
from tidings.projections._async.processing import AsyncProjectionProcessing
from tidings.projections.projection import Projection, ProjectionState, ProjectionStopped
from tidings.store._async.base import AsyncReadModelTransaction, AsyncStoreTransaction
from tidings.store.records import Watermark

__all__ = ["AsyncRebuilds"]


class AsyncRebuilds(AsyncProjectionProcessing):
    """Replays the log into a projection, here or by the runner that runs it, and waits."""

    async def rebuild(self, name: str, progress: Progress | None = None) -> None:
        """Empty `name`'s read model and replay the log into it; returns once caught up.

        When a runner (this one, or one in another process) runs the
        projection, it does the replay and this waits for it; otherwise the
        replay runs here. `progress(position, head)` is called as it goes.
        Raises `ProjectionStopped` if the projection is parked or paused
        before it has caught up.

        It is not caught up before it has replayed as far as the projection
        had reached: an inline projection (see `tidings.projections._async.inline`)
        reached events readers may not be shown yet, on PostgreSQL while an
        older transaction is open, and must not be handed back without them.

        A partitioned projection is rebuilt whole, every partition from the
        first event. This is also how its partition count changes: rows
        recorded with another count are dropped and made anew with this
        runner's (stop the runners of the old count first).
        """
        projection = self._get(name)
        keys = self._keys(name)
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            reached = 0
            for old in await self.checkpoints.load_of(tx, name):
                # The checkpoint's rows first: a batch in progress finishes before the
                # read model is emptied, and none starts until this commits.
                reached = max(reached, await self._reached_before(tx, old.name))
                if old.partitions != projection.partitions:
                    await self._letters.forget(tx, old.name, parked_only=False)
                    await self.checkpoints.delete(tx, old.name)
            for key in keys:
                await self.checkpoints.add(tx, key, partitions=projection.partitions)
                await self.checkpoints.restart(tx, key)
                # The replay records anew whatever still fails.
                await self._letters.forget(tx, key, parked_only=False)
            await call(projection.setup, tx)
            await call(projection.reset, tx)
        for key in keys:
            self._poke(key)
        with self._hearing_commits():
            for key in keys:
                await self._catch_up(key, projection, progress, until=reached)

    async def _reached_before(self, tx: AsyncStoreTransaction, name: str) -> int:
        """How far `name` has come, up to what committed; its row is locked until `tx` ends."""
        before = await self.checkpoints.hold(tx, name)
        if not before:
            return 0
        # A memory store's checkpoint may name a position whose commit then failed.
        watermark: Watermark = await self.store.watermark()
        return min(before, watermark.last_position)

    async def replace(
        self,
        projection: Projection[AsyncReadModelTransaction],
        swap: Callable[[AsyncStoreTransaction], object],
        progress: Progress | None = None,
    ) -> None:
        """Build a new version of a projection beside the live one, then swap it in.

        The new `projection` (same name, its read model elsewhere) is built
        from the first event under a checkpoint of its own while the live
        one keeps serving. Then the live one is paused, the new one catches
        up, and one transaction calls `swap(tx)` (rename tables, repoint a
        view) and hands the live checkpoint over: readers never see an empty
        read model. From then on this runner runs the new projection.
        """
        self._check(projection)
        name = projection.name
        if self._get(name).partitions > 1 or projection.partitions > 1:
            raise ValueError(f"projection {name!r} is partitioned: rebuild it instead")
        beside = f"{name}+next"
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            await self.checkpoints.add(tx, beside)
            await self.checkpoints.restart(tx, beside)
            await self._letters.forget(tx, beside, parked_only=False)
            await call(projection.setup, tx)
            await call(projection.reset, tx)
        with self._hearing_commits():
            await self._catch_up(beside, projection, progress)
        async with self._reading() as tx:
            before = await self.checkpoints.load(tx, name)
        # A projection paused by its operator stays paused, whether the swap succeeds or not.
        was_paused = before is not None and before.state == ProjectionState.PAUSED.value
        await self._set_state(name, ProjectionState.PAUSED)
        live = self.projections[name]
        try:
            with self._hearing_commits():
                await self._catch_up(beside, projection, progress)
            self.projections[name] = projection
            async with self.store.transaction() as tx:
                row = await self.checkpoints.load(tx, beside)
                assert row is not None
                await call(swap, tx)
                await self.checkpoints.move(tx, name, row.position)
                await self.checkpoints.delete(tx, beside)
                await self._letters.forget(tx, name, parked_only=True)
                await self._letters.forget(tx, beside, parked_only=True)
        except BaseException:
            self.projections[name] = live
            if not was_paused:
                await self._set_state(name, ProjectionState.RUNNING)
            raise
        if was_paused:
            await self._set_state(name, ProjectionState.PAUSED)
        self._poke(name)

    async def _catch_up(
        self,
        name: str,
        projection: Projection[AsyncReadModelTransaction],
        progress: Progress | None,
        until: int = 0,
    ) -> None:
        """Wait while a worker catches `name` up, or do it here when none runs it.

        Here, it is not caught up before position `until`. While a runner
        elsewhere holds its lease, this only reads (on SQLite, without the
        write lock), until that runner is done or its lease runs out.
        """
        report = progress if progress is not None else _ignore
        while True:
            if (
                name not in self._working
                and await self._claimable(name)
                and await self._claim(name)
            ):
                try:
                    head = await self._head()
                    # Taken over half-done, it goes on from where the replay had got to.
                    report((await self._load(name)).position, head)
                    await self._follow(name, projection, report, head, until=until)
                    row = await self._load(name)
                    if row.state != ProjectionState.RUNNING:
                        raise ProjectionStopped(name, ProjectionState(row.state), row.error)
                    report(row.position, row.position)
                except Fenced:
                    continue
                finally:
                    async with self.store.transaction() as tx:
                        await self.checkpoints.release(tx, name, self.owner)
                return
            seen = self._changes.count
            row = await self._load(name)
            if row.state == ProjectionState.RUNNING:
                report(row.position, row.position)
                return
            if row.state not in PROCESSING:
                raise ProjectionStopped(name, ProjectionState(row.state), row.error)
            report(row.position, await self._head())
            await self._wait_changes(seen, 0.05)

    async def _head(self) -> int:
        async with self._reading() as tx:
            head = await self.checkpoints.head(tx)
        return head

    async def _claimable(self, name: str) -> bool:
        """Whether a claim of `name` could succeed now: no other runner's lease is running."""
        row = await self._load(name)
        return row.owner in (None, self.owner) or (row.lease_until or 0) < time.time()


def _ignore(position: int, head: int) -> None:
    pass
