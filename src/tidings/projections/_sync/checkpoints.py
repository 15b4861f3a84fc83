# Generated from src/tidings/projections/_async/checkpoints.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Checkpoints, states and leases of projections, kept beside the log in the store's database."""

from __future__ import annotations

import time
import weakref
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from tidings.projections import tables
from tidings.projections.tables import Dialect, ProjectionRow
from tidings.sidetables import find_dialect
from tidings.sidetables._sync.statements import execute, execute_count

__all__ = ["Checkpoints"]


class Checkpoints:
    """The projections table of one store; every method runs in the store transaction `tx`.

    SQLite and PostgreSQL stores keep it in their database, through
    `tx.connection`; the memory store in memory, beside its log.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._dialect = _dialect_of(store)
        self._memory = _memory_rows(store) if self._dialect is None else None
        self._ready = False  # the table was found with all its columns

    @property
    def postgres(self) -> bool:
        return self._dialect is not None and self._dialect.postgres

    def ensure(self, tx: Any) -> None:
        """Create the table if missing, and the columns a table made by older versions lacks."""
        if self._dialect is None or self._ready:
            return
        query, params = self._dialect.columns()
        wanted = [column for column, _ in tables.ADDED_COLUMNS]
        present = {str(row[0]) for row in execute(tx, query, params)}
        if present.issuperset(wanted):
            self._ready = True
            return
        if self._dialect.postgres:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL.
            execute(
                tx, "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["tidings projections"]
            )
        for statement in self._dialect.create:
            execute(tx, statement)
        present = {str(row[0]) for row in execute(tx, query, params)}
        for column, kind in tables.ADDED_COLUMNS:
            if column not in present:
                execute(tx, self._dialect.add_column(column, kind))

    def add(self, tx: Any, name: str, *, inline: bool = False) -> None:
        """Make `name`'s row if missing; `inline` marks it applied by commits, not a runner."""
        if self._memory is not None:
            row = self._memory.setdefault(name, ProjectionRow.new(name))
            row.inline = row.inline or inline
            return
        self._run(tx, tables.INSERT, name)
        if inline:
            self._run(tx, tables.MARK_INLINE, name)

    def load(self, tx: Any, name: str) -> ProjectionRow | None:
        if self._memory is not None:
            found = self._memory.get(name)
            return None if found is None else replace(found)
        rows = self._run(tx, tables.SELECT, name)
        return ProjectionRow.of(rows[0]) if rows else None

    def load_all(self, tx: Any) -> list[ProjectionRow]:
        if self._memory is not None:
            return [replace(row) for _, row in sorted(self._memory.items())]
        return [ProjectionRow.of(row) for row in self._run(tx, tables.SELECT_ALL)]

    def claim(
        self, tx: Any, name: str, owner: str, lease: float, *, take_over: bool = False
    ) -> bool:
        """Become the one runner of `name`, if no other holds an unexpired lease.

        `take_over` claims it whatever the lease, for a runner that knows the
        previous owner is gone (it holds the projection's advisory lock).
        """
        now = time.time()
        row = self._memory_row(name)
        if row is not None:
            if take_over or row.owner in (None, owner) or (row.lease_until or 0) < now:
                row.owner, row.lease_until, row.heartbeat = owner, now + lease, now
                return True
            return False
        if take_over:
            return self._changed(tx, tables.TAKE, now, owner, now + lease, name)
        return self._changed(tx, tables.CLAIM, now, owner, now + lease, name, owner, now)

    def release(self, tx: Any, name: str, owner: str) -> None:
        row = self._memory_row(name)
        if row is not None:
            if row.owner == owner:
                row.owner = row.lease_until = None
            return
        self._run(tx, tables.RELEASE, name, owner)

    def renew(self, tx: Any, name: str, owner: str, lease: float) -> bool:
        row = self._memory_row(name)
        if row is not None:
            if row.owner != owner:
                return False
            row.heartbeat = time.time()
            row.lease_until = row.heartbeat + lease
            return True
        now = time.time()
        return self._changed(tx, tables.RENEW, now, now + lease, name, owner)

    def save(
        self, tx: Any, name: str, owner: str, old: int, new: int, lease: float, caught_up: bool
    ) -> bool:
        """Move the checkpoint from `old` to `new`, if `owner` still runs it from `old`.

        This fence fails when the lease was taken over, the projection was
        paused, or its position changed underneath (a rebuild): the caller
        then rolls its transaction back. `caught_up` ends a rebuild.
        """
        row = self._memory_row(name)
        if row is not None:
            if row.owner != owner or row.position != old or row.state not in _PROCESSING:
                return False
            row.heartbeat = time.time()
            row.position, row.lease_until = new, row.heartbeat + lease
            if caught_up:
                row.state = "running"
            return True
        now = time.time()
        return self._changed(
            tx, tables.SAVE, now, new, now + lease, caught_up, name, owner, old
        )

    def park(
        self, tx: Any, name: str, owner: str, position: int, error: str, failed: int
    ) -> bool:
        row = self._memory_row(name)
        if row is not None:
            if row.owner != owner or row.position != position:
                return False
            row.state, row.error, row.failed_position = "parked", error, failed
            return True
        return self._changed(tx, tables.PARK, error, failed, name, owner, position)

    def set_state(self, tx: Any, name: str, state: str) -> None:
        """Set the state and clear the error (pause, resume)."""
        row = self._memory_row(name)
        if row is not None:
            row.state, row.error, row.failed_position = state, None, None
            return
        self._run(tx, tables.SET_STATE, state, name)

    def restart(self, tx: Any, name: str) -> None:
        """Back to position 0, rebuilding."""
        row = self._memory_row(name)
        if row is not None:
            row.position, row.state, row.error, row.failed_position = 0, "rebuilding", None, None
            return
        self._run(tx, tables.RESTART, name)

    def move(self, tx: Any, name: str, position: int) -> None:
        """Set the position and run on from it (a read model swapped in)."""
        row = self._memory_row(name)
        if row is not None:
            row.position, row.state, row.error, row.failed_position = (
                position,
                "running",
                None,
                None,
            )
            return
        self._run(tx, tables.MOVE, position, name)

    def hold(self, tx: Any, name: str) -> int:
        """Lock `name`'s row until `tx` ends; its position (0 when no row exists)."""
        row = self._memory_row(name)
        if self._memory is not None:
            return 0 if row is None else row.position
        rows = self._run(tx, tables.HOLD, name)
        return int(rows[0][0]) if rows else 0

    def advance(self, tx: Any, name: str, position: int) -> tuple[str, str | None] | None:
        """Move a running projection's checkpoint up to `position`; its state and error.

        For inline projections, whose commits carry their events: the row is
        locked until `tx` ends, so a rebuild or a pause waits for the commit,
        and a commit that follows one sees its state. None when no row exists.
        """
        row = self._memory_row(name)
        if self._memory is not None:
            if row is None:
                return None
            if row.state == "running":
                row.position = max(row.position, position)
            return row.state, row.error
        if self.postgres:
            # The commit's own statement: a lost race on the row, under REPEATABLE READ
            # or SERIALIZABLE, is the ConcurrencyError a retry resolves.
            from tidings.store.postgres_sql import translated

            with translated():
                rows = self._run(tx, tables.ADVANCE, position, position, name)
        else:
            rows = self._run(tx, tables.ADVANCE, position, position, name)
        return (str(rows[0][0]), rows[0][1]) if rows else None

    def delete(self, tx: Any, name: str) -> None:
        if self._memory is not None:
            self._memory.pop(name, None)
            return
        self._run(tx, tables.DELETE, name)

    def skip(self, tx: Any, name: str, position: int) -> bool:
        """Move a projection parked on the event at `position` past it, running again."""
        row = self._memory_row(name)
        if row is not None:
            if row.state != "parked" or row.failed_position != position:
                return False
            row.position, row.state, row.error, row.failed_position = (
                position,
                "running",
                None,
                None,
            )
            return True
        return self._changed(tx, tables.SKIP, name, position)

    def head(self, tx: Any) -> int:
        """The last readable position of the log."""
        if self._dialect is None:
            head: int = self.store.head_position()
            return head
        rows = self._run(tx, tables.HEAD)
        return int(rows[0][0])

    def pending(
        self,
        tx: Any,
        position: int,
        categories: Collection[str] | None,
        types: Collection[str] | None,
    ) -> int:
        """How many readable events of these categories and types lie after `position`."""
        if self._dialect is None:
            records = self.store.read_all(after=position, categories=categories, types=types)
            return len(records)
        text, params = self._dialect.pending(categories, types)
        rows = execute(tx, text, [position, *params])
        return int(rows[0][0])

    def _memory_row(self, name: str) -> ProjectionRow | None:
        return None if self._memory is None else self._memory.get(name)

    def _run(self, tx: Any, text: str, *params: Any) -> list[tuple[Any, ...]]:
        assert self._dialect is not None
        return execute(tx, self._dialect.statement(text), list(params))

    def _changed(self, tx: Any, text: str, *params: Any) -> bool:
        assert self._dialect is not None
        return execute_count(tx, self._dialect.statement(text), params) > 0


_PROCESSING = ("running", "rebuilding")


def _dialect_of(store: Any) -> Dialect | None:
    side = find_dialect(store)
    return None if side is None else Dialect.of(side)


_memory_tables: weakref.WeakKeyDictionary[Any, dict[str, ProjectionRow]] = (
    weakref.WeakKeyDictionary()
)


def _memory_rows(store: Any) -> dict[str, ProjectionRow]:
    return _memory_tables.setdefault(store, {})
