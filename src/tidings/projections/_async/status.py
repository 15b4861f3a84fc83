"""How far projections have got: status with lag, and waiting for a position (read your writes).

Both only read: on SQLite in read transactions, which never wait for the
write lock, so a writer of another process holding it for long delays
neither. A wait wakes on every commit the store hears (on SQLite, other
processes' too) and otherwise looks again every 50 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Self

from tidings.projections._async.base import AsyncRunnerBase
from tidings.projections.projection import (
    PositionBeyondHead,
    Projection,
    ProjectionState,
    ProjectionStatus,
    ProjectionStopped,
    ProjectionTimeout,
)
from tidings.projections.tables import ProjectionRow
from tidings.store._async.base import AsyncReadModelTransaction

__all__ = ["AsyncRunnerStatus"]


class AsyncRunnerStatus(AsyncRunnerBase):
    """Reads projections' progress from the database, so it sees runners in any process."""

    async def status(self) -> list[ProjectionStatus]:
        """Position, head, lag, state and error of each projection, from the database.

        Each also carries what the store's readers are held back from
        (`held_back`, `held_for`), the same for every projection. A
        partitioned projection shows one line per partition, named
        `<name>#<index>`; its lag counts the projection's events after the
        partition's checkpoint, of every partition (those of the others are
        passed over, quickly).
        """
        watermark = await self.store.watermark()
        async with self._reading() as tx:
            rows = {row.name: row for row in await self.checkpoints.load_all(tx)}
            head = await self.checkpoints.head(tx)
            found: list[ProjectionStatus] = []
            for name, part in self._partitions.items():
                projection = self.projections[part.projection]
                row = rows.get(name) or ProjectionRow.new(name, part.count)
                lag = await self.checkpoints.pending(
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
                        partition=None if part.count == 1 else part.index,
                        partitions=part.count,
                    )
                )
        return found

    async def wait_for(self, name: str, position: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once `name` has processed the log up to `position` (read your writes).

        `position` is one an append returned (`AppendResult.positions`).
        Raises `ProjectionTimeout` when that takes more than `timeout` seconds,
        and at once what no waiting would change: `PositionBeyondHead` for a
        position past the last committed one, `ProjectionStopped` while the
        projection is parked on a failure. A partitioned projection has reached
        it once every partition has.
        """
        projection = self._get(name)
        deadline = time.monotonic() + timeout
        # Commits are listened for from the first wait on (a look that finds the position
        # reached, or `timeout=0`, starts no watch), until the last partition has it.
        with _Listening(self._hearing_commits) as listening:
            for key in self._keys(name):
                await self._wait_key(key, projection, position, deadline, timeout, listening)

    async def _wait_key(
        self,
        name: str,
        projection: Projection[AsyncReadModelTransaction],
        position: int,
        deadline: float,
        limit: float,
        listening: _Listening,
    ) -> None:
        first = True
        while True:
            seen = self._changes.count
            reached = await self._reached(name, projection, position)
            if reached >= position:
                return
            await self._check_reachable(name, position, first)
            first = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProjectionTimeout(name, position, reached, limit)
            if not listening.started:
                # Listening from now on: look once more, so no commit falls in between.
                listening.start()
                continue
            await self._wait_changes(seen, min(remaining, 0.05))

    async def _check_reachable(self, name: str, position: int, first: bool) -> None:
        """Raise if waiting for `name` to reach `position` could only time out.

        The log's head is looked at `first` only: it never moves back.
        """
        if first:
            watermark = await self.store.watermark()
            if position > watermark.last_position:
                raise PositionBeyondHead(position, watermark.last_position)
        async with self._reading() as tx:
            row = await self.checkpoints.load(tx, name)
        if row is not None and row.state == ProjectionState.PARKED:
            raise ProjectionStopped(name, ProjectionState.PARKED, row.error)

    async def _reached(
        self, name: str, projection: Projection[AsyncReadModelTransaction], position: int
    ) -> int:
        """How far `name` has processed: `position` itself once no event of it is left before."""
        current = self._positions.get(name, 0) if not self._stopped else 0
        if current < position:  # not here, or run by a runner elsewhere now
            async with self._reading() as tx:
                row = await self.checkpoints.load(tx, name)
            current = max(current, row.position if row is not None else 0)
        if current >= position:
            return current
        # A projection reads only its own events; one reached an event of others' once
        # that event is readable and none of its own lies between.
        landed = await self.store.read_all(after=position - 1, limit=1)
        if not landed or landed[0].position < position:
            return current
        ahead = await self.store.read_all(
            after=current,
            limit=1,
            categories=projection.categories,
            types=projection.event_types(),
        )
        if not ahead or ahead[0].position > position:
            return position
        return current


class _Listening:
    """The commit listener of one `wait_for`: started at its first wait, stopped as it ends."""

    def __init__(self, hearing: Callable[[], AbstractContextManager[None]]) -> None:
        self._hearing = hearing
        self._stack = ExitStack()
        self.started = False

    def start(self) -> None:
        self._stack.enter_context(self._hearing())
        self.started = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


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
