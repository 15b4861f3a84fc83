"""The event store protocol that every backend implements, and the checks they share."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from tidings.store.records import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamState

__all__ = ["AsyncEventStore", "AsyncStoreTransaction"]


class AsyncStoreTransaction(Protocol):
    """Appends that become visible together at `commit`, or not at all.

    A conflicting expected version raises `WrongExpectedVersion` from `append`
    or, at the latest, from `commit`.
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

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class AsyncEventStore(Protocol):
    """A durable, ordered log of events, in streams and in one global order (`$all`).

    Versions count from 1 within a stream; positions count from 1 in `$all`.
    """

    def transaction(self) -> AbstractAsyncContextManager[AsyncStoreTransaction]:
        """A transaction; it commits when the block ends normally and rolls back on error."""
        ...

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

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of `stream` from `from_version` (default: first, or last if backwards)."""
        ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        """Events of `$all` after position `after`, in order, optionally filtered."""
        ...

    async def stream_version(self, stream: str) -> int | None:
        """The stream's current version, or None when it does not exist."""
        ...

    async def aclose(self) -> None: ...
