"""The event store protocol that every backend implements, and the checks they share."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, Self
from uuid import UUID

from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
    Watermark,
)

__all__ = [
    "AsyncEventReader",
    "AsyncEventStore",
    "AsyncReadModelStore",
    "AsyncReadModelTransaction",
    "AsyncStoreTransaction",
    "AsyncStoreWriter",
    "AsyncTransactional",
]


class AsyncStoreWriter(Protocol):
    """Appends and reads inside one transaction, whoever ends it.

    A store transaction is one; so is what a SQL store's `joined(connection)`
    returns, which writes in a transaction that an application opened on its
    own connection and commits or rolls back itself.
    """

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult: ...

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    async def lock_stream(self, stream: str) -> None:
        """Hold `stream` until this transaction ends: a pessimistic lock.

        Another transaction that locks or appends to the same stream waits
        until this one commits or rolls back, in any process, so what this
        one reads of the stream after locking it is still current when it
        appends. PostgreSQL takes the stream's transaction-scoped advisory
        lock (the one appends take); a wait it finds to be a deadlock
        raises `ConcurrencyError`. SQLite's transactions already hold the
        database's write lock; memory stores serve one process.
        """
        ...


class AsyncReadModelTransaction(Protocol):
    """What a read model does in a store transaction: its own SQL, nothing of the log.

    A projection's handlers, `setup` and `reset` are given one (under the
    async runner and `AsyncUnitOfWork`): every store transaction is one, on
    every backend, so a projection that keeps to it runs unchanged on
    memory, SQLite and PostgreSQL. It cannot commit or roll back: the
    runner or the unit of work ends the transaction.
    """

    async def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        """Run an application statement (a read model's write) in this transaction.

        One parameter style on every backend: `?`. Tables created without a
        schema go beside the log: in the SQLite file, in the store's schema
        on PostgreSQL (first on the search path), in an in-process SQLite
        database for the memory store.
        """
        ...

    async def query(
        self, statement: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        """The rows of an application query in this transaction, `?` for parameters."""
        ...

    def batched(self) -> AbstractAsyncContextManager[None]:
        """A block whose statements on `connection` may be sent together.

        A backend that talks to a server over the network sends them in one
        round trip and reads their results at the end of the block (or when
        one's rows are fetched), so a failing statement may raise there
        rather than where it ran. Others run them as they come.
        """
        ...


class AsyncStoreTransaction(AsyncStoreWriter, AsyncReadModelTransaction, Protocol):
    """Appends that become visible together at `commit`, or not at all.

    A conflicting expected version raises `WrongExpectedVersion` from `append`
    or, at the latest, from `commit`.
    """

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class AsyncEventReader(Protocol):
    """What reading the log takes: streams, `$all` in order, and where its head is.

    A subscription needs no more; every event store is one.
    """

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of `stream` from `from_version` (default: first, or last if backwards).

        At most `limit` events; a soft-deleted stream has none.
        """
        ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        """Events of `$all` after position `after`, in order, optionally filtered.

        `categories` and `types` keep only events whose stream category or type
        is among them. Events of soft-deleted streams are included.
        """
        ...

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The events of `$all` whose correlation id is `correlation_id`, in `$all` order.

        At most `limit` of them. An index finds them, without reading the rest
        of the log; as in `read_all`, events of soft-deleted streams are included
        and none is shown before an event below it that has yet to commit.
        """
        ...

    async def head_position(self) -> int:
        """The position of the last event `read_all` returns now; 0 when it returns none.

        Cheap, whatever the log's length: reading `$all` after it starts at what
        commits next, as a subscriber that starts from now does.
        """
        ...

    async def watermark(self) -> Watermark:
        """How far readers of `$all` are held back now, and by how old a transaction.

        On PostgreSQL, any transaction of the cluster that has written holds
        back events committed after it began writing; elsewhere nothing is.
        """
        ...

    async def stream_version(self, stream: str) -> int | None:
        """The stream's current version, or None when it does not exist or is soft-deleted."""
        ...

    async def list_streams(
        self,
        category: str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> list[StreamInfo]:
        """Up to `limit` streams (of `category`, if given) named after `after`, in name order.

        Names are ordered by code point, so paging on with the last name seen
        lists every stream once. Soft-deleted streams are left out unless
        `include_deleted`.
        """
        ...

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        """The latest snapshot kept of `stream`, unless the stream was deleted since."""
        ...


class AsyncTransactional(Protocol):
    """A store that opens transactions: what side tables and read models beside the log need."""

    def transaction(self) -> AbstractAsyncContextManager[AsyncStoreTransaction]:
        """A transaction; it commits when the block ends normally and rolls back on error."""
        ...


class AsyncReadModelStore(AsyncEventReader, AsyncTransactional, Protocol):
    """What keeping read models beside the log takes: reading it, and transactions on its database.

    A projection runner, its dead letters and side tables need no more; every
    event store is one. Sync and async stores are told apart by type, so
    mypy refuses an async store given to a blocking component, and the reverse.
    """


class AsyncEventStore(AsyncEventReader, AsyncTransactional, Protocol):
    """A durable, ordered log of events, in streams and in one global order (`$all`).

    Versions count from 1 within a stream, without gaps. Positions in `$all`
    start at 1 and only increase; a backend may leave gaps between them, but a
    reader at position P never misses an event that commits later below P.

    A soft-deleted stream (`delete_stream`) reads as absent: `read_stream`
    returns nothing, `stream_version` None, `list_streams` hides it. Its events
    stay in `$all`, where subscribers have seen them and positions must not
    move. Appending to it revives it: expected versions treat it as absent,
    versions continue after its last one, and reads start at the first
    version appended after the delete.
    """

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        """Append `events` to `stream` atomically, if the stream is at `expected_version`.

        Appending a batch whose event ids are all stored already, as that same
        batch, stores nothing and returns where it landed the first time.
        """
        ...

    async def delete_stream(
        self, stream: str, expected_version: ExpectedVersion = StreamState.ANY
    ) -> None:
        """Soft-delete `stream` if it is at `expected_version`.

        Raises `StreamNotFound` when the stream does not exist or is already
        deleted (after checking `expected_version`, which treats it as absent).
        """
        ...

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        """Keep `snapshot` as its stream's latest, unless a later one is kept already.

        Snapshots sit beside the log, one per stream, never in `$all`. One is
        kept only at a version its stream reached since it was last revived
        (not deleted, from `first_version` on); returns whether it was kept.
        """
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        """The store itself: `async with` closes it at the end of the block."""
        ...

    async def __aexit__(self, *exc_info: object) -> None: ...
