# Generated from src/tidings/projections/_async/status.py by tools/unasync.py: edit that file, then run `make unasync`.
"""How far projections have got: status with lag, and waiting for a position (read your writes)."""

from __future__ import annotations

import time

from tidings.projections._sync.base import RunnerBase
from tidings.projections.projection import (
    PositionBeyondHead,
    Projection,
    ProjectionState,
    ProjectionStatus,
    ProjectionStopped,
    ProjectionTimeout,
)
from tidings.projections.tables import ProjectionRow

__all__ = ["RunnerStatus"]


class RunnerStatus(RunnerBase):
    """Reads projections' progress from the database, so it sees runners in any process."""

    def status(self) -> list[ProjectionStatus]:
        """Position, head, lag, state and error of each projection, from the database.

        Each also carries what the store's readers are held back from
        (`held_back`, `held_for`), the same for every projection.
        """
        watermark = self.store.watermark()
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            rows = {row.name: row for row in self.checkpoints.load_all(tx)}
            head = self.checkpoints.head(tx)
            found: list[ProjectionStatus] = []
            for name, projection in self.projections.items():
                row = rows.get(name) or ProjectionRow.new(name)
                lag = self.checkpoints.pending(
                    tx, row.position, projection.categories, projection.event_types()
                )
                now = time.time()
                found.append(
                    ProjectionStatus(
                        name,
                        _shown_state(row, now),
                        row.position,
                        head,
                        lag,
                        row.error,
                        row.failed_position,
                        held_back=watermark.held_back,
                        held_for=watermark.held_for,
                        owner=_INLINE if row.owner is None and row.inline else row.owner,
                        heartbeat_age=None
                        if row.heartbeat is None
                        else max(0.0, now - row.heartbeat),
                    )
                )
        return found

    def wait_for(self, name: str, position: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once `name` has processed the log up to `position` (read your writes).

        `position` is one an append returned (`AppendResult.positions`).
        Raises `ProjectionTimeout` when that takes more than `timeout` seconds,
        and at once what no waiting would change: `PositionBeyondHead` for a
        position past the last committed one, `ProjectionStopped` while the
        projection is parked on a failure.
        """
        projection = self._get(name)
        deadline = time.monotonic() + timeout
        first = True
        while True:
            seen = self._changes.count
            reached = self._reached(name, projection, position)
            if reached >= position:
                return
            self._check_reachable(name, position, first)
            first = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProjectionTimeout(name, position, reached, timeout)
            self._wait_changes(seen, min(remaining, 0.05))

    def _check_reachable(self, name: str, position: int, first: bool) -> None:
        """Raise if waiting for `name` to reach `position` could only time out.

        The log's head is looked at `first` only: it never moves back.
        """
        if first:
            watermark = self.store.watermark()
            if position > watermark.last_position:
                raise PositionBeyondHead(position, watermark.last_position)
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            row = self.checkpoints.load(tx, name)
        if row is not None and row.state == ProjectionState.PARKED:
            raise ProjectionStopped(name, ProjectionState.PARKED, row.error)

    def _reached(self, name: str, projection: Projection, position: int) -> int:
        """How far `name` has processed: `position` itself once no event of it is left before."""
        current = self._positions.get(name, 0) if not self._stopped else 0
        if current < position:  # not here, or run by a runner elsewhere now
            with self.store.transaction() as tx:
                self.checkpoints.ensure(tx)
                row = self.checkpoints.load(tx, name)
            current = max(current, row.position if row is not None else 0)
        if current >= position:
            return current
        # A projection reads only its own events; one reached an event of others' once
        # that event is readable and none of its own lies between.
        landed = self.store.read_all(after=position - 1, limit=1)
        if not landed or landed[0].position < position:
            return current
        ahead = self.store.read_all(
            after=current,
            limit=1,
            categories=projection.categories,
            types=projection.event_types(),
        )
        if not ahead or ahead[0].position > position:
            return position
        return current


_INLINE = "inline"


def _shown_state(row: ProjectionRow, now: float) -> ProjectionState:
    """The stored state, unless it says the projection runs while no runner does.

    A runner renews its lease every third of its length, so one whose lease
    has run out has missed three heartbeats: stale. An inline projection with
    no runner is applied by the commits themselves.
    """
    state = ProjectionState(row.state)
    if state not in (ProjectionState.RUNNING, ProjectionState.REBUILDING):
        return state
    if row.owner is None:
        return state if row.inline and state is ProjectionState.RUNNING else ProjectionState.STOPPED
    if row.lease_until is None or row.lease_until < now:
        return ProjectionState.STALE
    return state
