# Generated from src/tidings/projections/_async/rebuilds.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Rebuilding a projection in place, or building a new version beside it and swapping it in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tidings.projections._sync.base import PROCESSING, Fenced, Progress, call
from tidings.projections._sync.processing import ProjectionProcessing
from tidings.projections.projection import Projection, ProjectionState, ProjectionStopped
from tidings.store.records import Watermark

__all__ = ["Rebuilds"]


class Rebuilds(ProjectionProcessing):
    """Replays the log into a projection, here or by the runner that runs it, and waits."""

    def rebuild(self, name: str, progress: Progress | None = None) -> None:
        """Empty `name`'s read model and replay the log into it; returns once caught up.

        When a runner (this one, or one in another process) runs the
        projection, it does the replay and this waits for it; otherwise the
        replay runs here. `progress(position, head)` is called as it goes.
        Raises `ProjectionStopped` if the projection is parked or paused
        before it has caught up.

        It is not caught up before it has replayed as far as the projection
        had reached: an inline projection (see `tidings.projections._sync.inline`)
        reached events readers may not be shown yet, on PostgreSQL while an
        older transaction is open, and must not be handed back without them.
        """
        projection = self._get(name)
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            self.checkpoints.add(tx, name)
            # The checkpoint's row first: a batch in progress finishes before the
            # read model is emptied, and none starts until this commits.
            reached = self._reached_before(tx, name)
            self.checkpoints.restart(tx, name)
            # The replay records anew whatever still fails.
            self._letters.forget(tx, name, parked_only=False)
            call(projection.setup, tx)
            call(projection.reset, tx)
        self._poke(name)
        self._catch_up(name, projection, progress, until=reached)

    def _reached_before(self, tx: Any, name: str) -> int:
        """How far `name` has come, up to what committed; its row is locked until `tx` ends."""
        before = self.checkpoints.hold(tx, name)
        if not before:
            return 0
        # A memory store's checkpoint may name a position whose commit then failed.
        watermark: Watermark = self.store.watermark()
        return min(before, watermark.last_position)

    def replace(
        self,
        projection: Projection,
        swap: Callable[[Any], Any],
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
        self._get(name)
        beside = f"{name}+next"
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            self.checkpoints.add(tx, beside)
            self.checkpoints.restart(tx, beside)
            self._letters.forget(tx, beside, parked_only=False)
            call(projection.setup, tx)
            call(projection.reset, tx)
        self._catch_up(beside, projection, progress)
        with self.store.transaction() as tx:
            before = self.checkpoints.load(tx, name)
        # A projection paused by its operator stays paused, whether the swap succeeds or not.
        was_paused = before is not None and before.state == ProjectionState.PAUSED.value
        self._set_state(name, ProjectionState.PAUSED)
        live = self.projections[name]
        try:
            self._catch_up(beside, projection, progress)
            self.projections[name] = projection
            with self.store.transaction() as tx:
                row = self.checkpoints.load(tx, beside)
                assert row is not None
                call(swap, tx)
                self.checkpoints.move(tx, name, row.position)
                self.checkpoints.delete(tx, beside)
                self._letters.forget(tx, name, parked_only=True)
                self._letters.forget(tx, beside, parked_only=True)
        except BaseException:
            self.projections[name] = live
            if not was_paused:
                self._set_state(name, ProjectionState.RUNNING)
            raise
        if was_paused:
            self._set_state(name, ProjectionState.PAUSED)
        self._poke(name)

    def _catch_up(
        self, name: str, projection: Projection, progress: Progress | None, until: int = 0
    ) -> None:
        """Wait while a worker catches `name` up, or do it here when none runs it.

        Here, it is not caught up before position `until`.
        """
        report = progress if progress is not None else _ignore
        while True:
            if name not in self._working and self._claim(name):
                try:
                    head = self._head()
                    # Taken over half-done, it goes on from where the replay had got to.
                    report((self._load(name)).position, head)
                    self._follow(name, projection, report, head, until=until)
                    row = self._load(name)
                    if row.state != ProjectionState.RUNNING:
                        raise ProjectionStopped(name, ProjectionState(row.state), row.error)
                    report(row.position, row.position)
                except Fenced:
                    continue
                finally:
                    with self.store.transaction() as tx:
                        self.checkpoints.release(tx, name, self.owner)
                return
            seen = self._changes.count
            row = self._load(name)
            if row.state == ProjectionState.RUNNING:
                report(row.position, row.position)
                return
            if row.state not in PROCESSING:
                raise ProjectionStopped(name, ProjectionState(row.state), row.error)
            report(row.position, self._head())
            self._wait_changes(seen, 0.05)

    def _head(self) -> int:
        with self.store.transaction() as tx:
            head = self.checkpoints.head(tx)
        return head


def _ignore(position: int, head: int) -> None:
    pass
