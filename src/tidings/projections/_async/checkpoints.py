"""Checkpoints, states and leases of projections, kept beside the log in the store's database.

One implementation per kind of store, chosen once (`checkpoints_of`): the SQL
one keeps the rows in the store's database, through `tx.connection`, so they
commit with a read model's writes; the memory one beside a memory store's log.
"""

from __future__ import annotations

import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from tidings.projections import tables
from tidings.projections.partitions import SEPARATOR
from tidings.projections.tables import Dialect, ProjectionRow
from tidings.sidetables import find_dialect
from tidings.sidetables._async.statements import execute, execute_count
from tidings.store._async.base import AsyncReadModelStore, AsyncStoreTransaction

if TYPE_CHECKING:
    from tidings.store._async.memory import AsyncMemoryTransaction

__all__ = ["AsyncCheckpoints", "checkpoints_of"]


def checkpoints_of(store: AsyncReadModelStore) -> AsyncCheckpoints:
    """The projections table of `store`: in its database, or in memory beside its log."""
    side = find_dialect(store)
    if side is None:
        return AsyncMemoryCheckpoints(store)
    return AsyncSQLCheckpoints(store, Dialect.of(side))


class AsyncCheckpoints(ABC):
    """The projections table of one store; every method runs in the store transaction `tx`.

    A row's lease is fenced twice: by its owner and by its token, which a
    claim raises whenever the lease changes hands. Checkpoint writes and
    parking name both, so a runner whose lease was taken over writes nothing.
    """

    postgres = False

    def __init__(self, store: AsyncReadModelStore) -> None:
        self.store = store

    @abstractmethod
    async def ensure(self, tx: AsyncStoreTransaction) -> None:
        """Create the table if missing, and the columns a table made by older versions lacks."""

    @abstractmethod
    async def add(
        self, tx: AsyncStoreTransaction, name: str, *, inline: bool = False, partitions: int = 1
    ) -> None:
        """Make `name`'s row if missing; `inline` marks it applied by commits, not a runner."""

    @abstractmethod
    async def load(self, tx: AsyncStoreTransaction, name: str) -> ProjectionRow | None: ...

    @abstractmethod
    async def load_all(self, tx: AsyncStoreTransaction) -> list[ProjectionRow]: ...

    @abstractmethod
    async def load_of(self, tx: AsyncStoreTransaction, projection: str) -> list[ProjectionRow]:
        """The rows of `projection`: its own, and its partitions'."""

    @abstractmethod
    async def delete_of(self, tx: AsyncStoreTransaction, projection: str) -> None:
        """Drop the rows of `projection` and its partitions (a rebuild that splits it anew)."""

    @abstractmethod
    async def claim(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        lease: float,
        *,
        take_over: bool = False,
    ) -> bool:
        """Become the one runner of `name`, if no other holds an unexpired lease.

        A new owner raises the row's token. `take_over` claims it whatever the
        lease, for a runner that knows the previous owner is gone (it holds
        the projection's advisory lock).
        """

    @abstractmethod
    async def release(self, tx: AsyncStoreTransaction, name: str, owner: str) -> None: ...

    @abstractmethod
    async def renew(
        self, tx: AsyncStoreTransaction, name: str, owner: str, token: int, lease: float
    ) -> bool: ...

    @abstractmethod
    async def save(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        old: int,
        new: int,
        lease: float,
        caught_up: bool,
    ) -> bool:
        """Move the checkpoint from `old` to `new`, if `owner` still runs it from `old`.

        This fence fails when the lease was taken over (owner or token), the
        projection was paused, or its position changed underneath (a rebuild):
        the caller then rolls its transaction back. `caught_up` ends a rebuild.
        """

    @abstractmethod
    async def park(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        position: int,
        error: str,
        failed: int,
    ) -> bool: ...

    @abstractmethod
    async def set_state(self, tx: AsyncStoreTransaction, name: str, state: str) -> None:
        """Set the state and clear the error (pause, resume)."""

    @abstractmethod
    async def restart(self, tx: AsyncStoreTransaction, name: str) -> None:
        """Back to position 0, rebuilding."""

    @abstractmethod
    async def move(self, tx: AsyncStoreTransaction, name: str, position: int) -> None:
        """Set the position and run on from it (a read model swapped in)."""

    @abstractmethod
    async def hold(self, tx: AsyncStoreTransaction, name: str) -> int:
        """Lock `name`'s row until `tx` ends; its position (0 when no row exists)."""

    @abstractmethod
    async def advance(
        self, tx: AsyncStoreTransaction, name: str, position: int
    ) -> tuple[str, str | None] | None:
        """Move a running projection's checkpoint up to `position`; its state and error.

        For inline projections, whose commits carry their events: the row is
        locked until `tx` ends, so a rebuild or a pause waits for the commit,
        and a commit that follows one sees its state. None when no row exists.
        """

    @abstractmethod
    async def delete(self, tx: AsyncStoreTransaction, name: str) -> None: ...

    @abstractmethod
    async def skip(self, tx: AsyncStoreTransaction, name: str, position: int) -> bool:
        """Move a projection parked on the event at `position` past it, running again."""

    @abstractmethod
    async def head(self, tx: AsyncStoreTransaction) -> int:
        """The last readable position of the log."""

    @abstractmethod
    async def pending(
        self,
        tx: AsyncStoreTransaction,
        position: int,
        categories: Collection[str] | None,
        types: Collection[str] | None,
    ) -> int:
        """How many readable events of these categories and types lie after `position`."""

    @abstractmethod
    async def beat(
        self, tx: AsyncStoreTransaction, projection: str, owner: str, lease: float
    ) -> int:
        """Say `owner` runs `projection`; how many runners have said so within `lease` seconds.

        Members silent for longer are forgotten.
        """

    @abstractmethod
    async def leave(self, tx: AsyncStoreTransaction, projection: str, owner: str) -> None:
        """`owner` no longer runs `projection`."""


class AsyncMemoryCheckpoints(AsyncCheckpoints):
    """The rows of a memory store, in process memory beside its log."""

    def __init__(self, store: AsyncReadModelStore) -> None:
        super().__init__(store)
        self._rows, self._members = _memory_tables.setdefault(store, ({}, {}))

    async def ensure(self, tx: AsyncStoreTransaction) -> None:
        """Nothing to create: the rows live in a dictionary."""

    def _keep(self, tx: AsyncStoreTransaction, name: str) -> None:
        """Put row `name` back as it is now if `tx` rolls back: the rows change with the log."""
        before = self._rows.get(name)
        kept = None if before is None else replace(before)

        def undo() -> None:
            if kept is None:
                self._rows.pop(name, None)
            else:
                self._rows[name] = kept

        cast("AsyncMemoryTransaction", tx).on_rollback(undo)

    async def add(
        self, tx: AsyncStoreTransaction, name: str, *, inline: bool = False, partitions: int = 1
    ) -> None:
        self._keep(tx, name)
        row = self._rows.setdefault(name, ProjectionRow.new(name, partitions))
        row.inline = row.inline or inline

    async def load(self, tx: AsyncStoreTransaction, name: str) -> ProjectionRow | None:
        found = self._rows.get(name)
        return None if found is None else replace(found)

    async def load_all(self, tx: AsyncStoreTransaction) -> list[ProjectionRow]:
        return [replace(row) for _, row in sorted(self._rows.items())]

    async def load_of(self, tx: AsyncStoreTransaction, projection: str) -> list[ProjectionRow]:
        return [row for row in await self.load_all(tx) if _of(row.name, projection)]

    async def delete_of(self, tx: AsyncStoreTransaction, projection: str) -> None:
        for name in [name for name in self._rows if _of(name, projection)]:
            self._keep(tx, name)
            del self._rows[name]

    async def claim(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        lease: float,
        *,
        take_over: bool = False,
    ) -> bool:
        self._keep(tx, name)
        now = time.time()
        row = self._rows.get(name)
        if row is None:
            return False
        if take_over or row.owner in (None, owner) or (row.lease_until or 0) < now:
            if row.owner != owner:
                row.token += 1
            row.owner, row.lease_until, row.heartbeat = owner, now + lease, now
            return True
        return False

    async def release(self, tx: AsyncStoreTransaction, name: str, owner: str) -> None:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is not None and row.owner == owner:
            row.owner = row.lease_until = None

    async def renew(
        self, tx: AsyncStoreTransaction, name: str, owner: str, token: int, lease: float
    ) -> bool:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is None or row.owner != owner or row.token != token:
            return False
        row.heartbeat = time.time()
        row.lease_until = row.heartbeat + lease
        return True

    async def save(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        old: int,
        new: int,
        lease: float,
        caught_up: bool,
    ) -> bool:
        self._keep(tx, name)
        row = self._rows.get(name)
        if (
            row is None
            or row.owner != owner
            or row.token != token
            or row.position != old
            or row.state not in _PROCESSING
        ):
            return False
        row.heartbeat = time.time()
        row.position, row.lease_until = new, row.heartbeat + lease
        if caught_up:
            row.state = "running"
        return True

    async def park(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        position: int,
        error: str,
        failed: int,
    ) -> bool:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is None or row.owner != owner or row.token != token or row.position != position:
            return False
        row.state, row.error, row.failed_position = "parked", error, failed
        return True

    async def set_state(self, tx: AsyncStoreTransaction, name: str, state: str) -> None:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is not None:
            row.state, row.error, row.failed_position = state, None, None

    async def restart(self, tx: AsyncStoreTransaction, name: str) -> None:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is not None:
            row.position, row.state, row.error, row.failed_position = 0, "rebuilding", None, None

    async def move(self, tx: AsyncStoreTransaction, name: str, position: int) -> None:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is not None:
            row.position, row.state, row.error, row.failed_position = (
                position,
                "running",
                None,
                None,
            )

    async def hold(self, tx: AsyncStoreTransaction, name: str) -> int:
        row = self._rows.get(name)
        return 0 if row is None else row.position

    async def advance(
        self, tx: AsyncStoreTransaction, name: str, position: int
    ) -> tuple[str, str | None] | None:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is None:
            return None
        if row.state == "running":
            row.position = max(row.position, position)
        return row.state, row.error

    async def delete(self, tx: AsyncStoreTransaction, name: str) -> None:
        self._keep(tx, name)
        self._rows.pop(name, None)

    async def skip(self, tx: AsyncStoreTransaction, name: str, position: int) -> bool:
        self._keep(tx, name)
        row = self._rows.get(name)
        if row is None or row.state != "parked" or row.failed_position != position:
            return False
        row.position, row.state = position, "running"
        row.error = row.failed_position = None
        return True

    async def head(self, tx: AsyncStoreTransaction) -> int:
        head: int = await self.store.head_position()
        return head

    async def pending(
        self,
        tx: AsyncStoreTransaction,
        position: int,
        categories: Collection[str] | None,
        types: Collection[str] | None,
    ) -> int:
        records = await self.store.read_all(after=position, categories=categories, types=types)
        return len(records)

    async def beat(
        self, tx: AsyncStoreTransaction, projection: str, owner: str, lease: float
    ) -> int:
        now = time.time()
        members = self._members.setdefault(projection, {})
        members[owner] = now
        for gone in [other for other, seen in members.items() if seen < now - lease]:
            del members[gone]
        return len(members)

    async def leave(self, tx: AsyncStoreTransaction, projection: str, owner: str) -> None:
        self._members.get(projection, {}).pop(owner, None)


class AsyncSQLCheckpoints(AsyncCheckpoints):
    """The rows in the store's SQLite or PostgreSQL database, through `tx.connection`."""

    def __init__(self, store: AsyncReadModelStore, dialect: Dialect) -> None:
        super().__init__(store)
        self._dialect = dialect
        self.postgres = dialect.postgres
        self._ready = False  # the table was found with all its columns

    async def ensure(self, tx: AsyncStoreTransaction) -> None:
        if self._ready:
            return
        query, params = self._dialect.columns()
        wanted = [column for column, _ in tables.ADDED_COLUMNS]
        present = {str(row[0]) for row in await execute(tx, query, params)}
        if present.issuperset(wanted):
            self._ready = True
            return
        if self._dialect.postgres:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL.
            await execute(
                tx, "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["tidings projections"]
            )
        for statement in self._dialect.create:
            await execute(tx, statement)
        present = {str(row[0]) for row in await execute(tx, query, params)}
        for column, kind in tables.ADDED_COLUMNS:
            if column not in present:
                await execute(tx, self._dialect.add_column(column, kind))

    async def add(
        self, tx: AsyncStoreTransaction, name: str, *, inline: bool = False, partitions: int = 1
    ) -> None:
        await self._run(tx, tables.INSERT, name, partitions)
        if inline:
            await self._run(tx, tables.MARK_INLINE, name)

    async def load(self, tx: AsyncStoreTransaction, name: str) -> ProjectionRow | None:
        rows = await self._run(tx, tables.SELECT, name)
        return ProjectionRow.of(rows[0]) if rows else None

    async def load_all(self, tx: AsyncStoreTransaction) -> list[ProjectionRow]:
        return [ProjectionRow.of(row) for row in await self._run(tx, tables.SELECT_ALL)]

    async def load_of(self, tx: AsyncStoreTransaction, projection: str) -> list[ProjectionRow]:
        prefix = projection + SEPARATOR
        rows = await self._run(tx, tables.SELECT_OF, projection, len(prefix), prefix)
        return [ProjectionRow.of(row) for row in rows]

    async def delete_of(self, tx: AsyncStoreTransaction, projection: str) -> None:
        prefix = projection + SEPARATOR
        await self._run(tx, tables.DELETE_OF, projection, len(prefix), prefix)

    async def claim(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        lease: float,
        *,
        take_over: bool = False,
    ) -> bool:
        now = time.time()
        if take_over:
            return await self._changed(tx, tables.TAKE, now, owner, owner, now + lease, name)
        return await self._changed(
            tx, tables.CLAIM, now, owner, owner, now + lease, name, owner, now
        )

    async def release(self, tx: AsyncStoreTransaction, name: str, owner: str) -> None:
        await self._run(tx, tables.RELEASE, name, owner)

    async def renew(
        self, tx: AsyncStoreTransaction, name: str, owner: str, token: int, lease: float
    ) -> bool:
        now = time.time()
        return await self._changed(tx, tables.RENEW, now, now + lease, name, owner, token)

    async def save(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        old: int,
        new: int,
        lease: float,
        caught_up: bool,
    ) -> bool:
        now = time.time()
        return await self._changed(
            tx, tables.SAVE, now, new, now + lease, caught_up, name, owner, token, old
        )

    async def park(
        self,
        tx: AsyncStoreTransaction,
        name: str,
        owner: str,
        token: int,
        position: int,
        error: str,
        failed: int,
    ) -> bool:
        return await self._changed(tx, tables.PARK, error, failed, name, owner, token, position)

    async def set_state(self, tx: AsyncStoreTransaction, name: str, state: str) -> None:
        await self._run(tx, tables.SET_STATE, state, name)

    async def restart(self, tx: AsyncStoreTransaction, name: str) -> None:
        await self._run(tx, tables.RESTART, name)

    async def move(self, tx: AsyncStoreTransaction, name: str, position: int) -> None:
        await self._run(tx, tables.MOVE, position, name)

    async def hold(self, tx: AsyncStoreTransaction, name: str) -> int:
        rows = await self._run(tx, tables.HOLD, name)
        return int(rows[0][0]) if rows else 0

    async def advance(
        self, tx: AsyncStoreTransaction, name: str, position: int
    ) -> tuple[str, str | None] | None:
        if self.postgres:
            # The commit's own statement: a lost race on the row, under REPEATABLE READ
            # or SERIALIZABLE, is the ConcurrencyError a retry resolves.
            from tidings.store.postgres_sql import translated

            with translated():
                rows = await self._run(tx, tables.ADVANCE, position, position, name)
        else:
            rows = await self._run(tx, tables.ADVANCE, position, position, name)
        return (str(rows[0][0]), rows[0][1]) if rows else None

    async def delete(self, tx: AsyncStoreTransaction, name: str) -> None:
        await self._run(tx, tables.DELETE, name)

    async def skip(self, tx: AsyncStoreTransaction, name: str, position: int) -> bool:
        return await self._changed(tx, tables.SKIP, name, position)

    async def head(self, tx: AsyncStoreTransaction) -> int:
        rows = await self._run(tx, tables.HEAD)
        return int(rows[0][0])

    async def pending(
        self,
        tx: AsyncStoreTransaction,
        position: int,
        categories: Collection[str] | None,
        types: Collection[str] | None,
    ) -> int:
        text, params = self._dialect.pending(categories, types)
        rows = await execute(tx, text, [position, *params])
        return int(rows[0][0])

    async def beat(
        self, tx: AsyncStoreTransaction, projection: str, owner: str, lease: float
    ) -> int:
        now = time.time()
        await self._run(tx, tables.BEAT, projection, owner, now)
        await self._run(tx, tables.FORGET_MEMBERS, projection, now - lease)
        rows = await self._run(tx, tables.MEMBERS, projection, now - lease)
        return int(rows[0][0])

    async def leave(self, tx: AsyncStoreTransaction, projection: str, owner: str) -> None:
        await self._run(tx, tables.LEAVE, projection, owner)

    async def _run(
        self, tx: AsyncStoreTransaction, text: str, *params: object
    ) -> list[tuple[Any, ...]]:
        return await execute(tx, self._dialect.statement(text), list(params))

    async def _changed(self, tx: AsyncStoreTransaction, text: str, *params: object) -> bool:
        return await execute_count(tx, self._dialect.statement(text), params) > 0


_PROCESSING = ("running", "rebuilding")


def _of(name: str, projection: str) -> bool:
    return name == projection or name.startswith(projection + SEPARATOR)


_memory_tables: weakref.WeakKeyDictionary[
    object, tuple[dict[str, ProjectionRow], dict[str, dict[str, float]]]
] = weakref.WeakKeyDictionary()
