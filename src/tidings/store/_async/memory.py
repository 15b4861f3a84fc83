"""An event store in memory: for tests and examples, with the same semantics as the durable ones."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self
from uuid import UUID

import anyio  # sync: import threading

from tidings.errors import StoreUnavailable, StreamNotFound, TransactionClosed
from tidings.observability import hooks
from tidings.observability.hooks import ALL
from tidings.store.checks import (
    check_expected_version,
    check_list_streams,
    check_new_events,
    check_read_all,
    check_read_correlated,
    check_read_stream,
    check_snapshot,
    check_stream,
    check_stream_name,
    repeated_append,
)
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
    Watermark,
    category_of,
)

__all__ = ["AsyncMemoryStore"]

SYSTEM = "memory"  # the `db.system` of its read spans


@dataclass
class _Stream:
    records: list[RecordedEvent] = field(default_factory=list)
    first_version: int = 1
    deleted: bool = False

    @property
    def last_version(self) -> int:
        return self.records[-1].version if self.records else 0

    @property
    def version(self) -> int | None:
        """The version expected versions are checked against: None when absent or deleted."""
        return None if self.deleted or not self.records else self.last_version

    def visible(self) -> list[RecordedEvent]:
        # Versions are 1-based and dense, so version v sits at index v - 1; a deleted
        # stream's first version lies beyond its last.
        return self.records[self.first_version - 1 :]


@dataclass
class _Log:
    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, _Stream] = field(default_factory=dict)
    by_id: dict[object, RecordedEvent] = field(default_factory=dict)
    by_correlation: dict[UUID, list[RecordedEvent]] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    tables: sqlite3.Connection = field(default_factory=lambda: _tables())
    """An in-process SQLite database for applications' tables (read models)."""

    def select(
        self,
        after: int,
        limit: int | None,
        categories: Collection[str] | None,
        types: Collection[str] | None,
    ) -> list[RecordedEvent]:
        """The page of `$all` that `read_all` reads (its arguments checked)."""
        # Positions are 1-based and dense, so position p sits at index p - 1.
        selected: list[RecordedEvent] = []
        for record in self.events[max(after, 0) :]:
            if categories is not None and record.category not in categories:
                continue
            if types is not None and record.type not in types:
                continue
            selected.append(record)
            if limit is not None and len(selected) >= limit:
                break
        return selected


def _tables() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


class AsyncMemoryStore:
    """Keeps the log in process memory; one writing transaction at a time, readers never wait."""

    def __init__(self) -> None:
        self._log = _Log()
        self._write_lock = anyio.Lock()  # sync: self._write_lock = threading.Lock()
        self._closed = False
        self._commit_listeners: list[Callable[[int], None]] = []

    def add_commit_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(last_position)` after each commit that appended events.

        It runs on the committing thread, after the write lock is released, and
        must be quick; subscriptions use it to wake at once. Returns a function
        that removes the listener.
        """
        self._commit_listeners.append(listener)
        return lambda: self._commit_listeners.remove(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncMemoryTransaction]:
        self._check_open()
        async with self._write_lock:
            tx = AsyncMemoryTransaction(self._log)
            try:
                yield tx
            except BaseException:
                await tx.rollback()
                raise
            if not tx.finished:
                await tx.commit()
        if tx.last_position:
            for listener in list(self._commit_listeners):
                listener(tx.last_position)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        async with self.transaction() as tx:
            return await tx.append(stream, events, expected_version)

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        self._check_open()
        check_read_stream(stream, from_version, limit)
        found = self._log.streams.get(stream)
        if hooks.observer is None:  # the seam would cost half as much as the read: skip it
            return _slice(found.visible() if found else [], from_version, backwards, limit)
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            records = _slice(found.visible() if found else [], from_version, backwards, limit)
            reading.read(len(records))
        return records

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        self._check_open()
        check_read_all(after, limit, categories, types)
        if limit == 0:
            return []
        if hooks.observer is None:  # as in `read_stream`
            return self._log.select(after, limit, categories, types)
        with hooks.reading(SYSTEM, "read_all", ALL) as reading:
            selected = self._log.select(after, limit, categories, types)
            reading.read(len(selected))
        return selected

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        self._check_open()
        check_read_correlated(correlation_id, limit)
        correlated = self._log.by_correlation.get(correlation_id, [])
        return correlated[:limit] if limit is not None else list(correlated)

    async def head_position(self) -> int:
        self._check_open()
        # Positions are dense from 1, so the last one is the number of events.
        return len(self._log.events)

    async def watermark(self) -> Watermark:
        """Commits are published whole, one at a time: readers are never held back."""
        head = await self.head_position()
        return Watermark(head, head, 0, 0.0)

    async def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        self._check_open()
        found = self._log.streams.get(stream)
        return found.version if found else None

    async def list_streams(
        self,
        category: str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> list[StreamInfo]:
        self._check_open()
        check_list_streams(category, after, limit)
        listed: list[StreamInfo] = []
        for name in sorted(self._log.streams):
            if len(listed) >= limit:
                break
            found = self._log.streams[name]
            if (
                (after is not None and name <= after)
                or (category is not None and category_of(name) != category)
                or (found.deleted and not include_deleted)
            ):
                continue
            listed.append(StreamInfo(name, found.last_version, found.first_version, found.deleted))
        return listed

    async def delete_stream(
        self, stream: str, expected_version: ExpectedVersion = StreamState.ANY
    ) -> None:
        check_stream(stream, expected_version)
        self._check_open()
        async with self._write_lock:
            found = self._log.streams.get(stream)
            current = found.version if found else None
            check_expected_version(stream, expected_version, current)
            if found is None or current is None:
                raise StreamNotFound(stream)
            found.deleted = True
            found.first_version = found.last_version + 1

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        check_snapshot(snapshot)
        self._check_open()
        async with self._write_lock:
            kept = self._log.snapshots.get(snapshot.stream)
            if not _in_current_life(self._log.streams.get(snapshot.stream), snapshot) or (
                kept is not None and kept.version > snapshot.version
            ):
                return False
            self._log.snapshots[snapshot.stream] = snapshot
            return True

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_name(stream)
        self._check_open()
        snapshot = self._log.snapshots.get(stream)
        if snapshot is None or not _in_current_life(self._log.streams.get(stream), snapshot):
            return None
        return snapshot

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")


class AsyncMemoryTransaction:
    """Stages appends; `commit` publishes them to the log all at once."""

    def __init__(self, log: _Log) -> None:
        self._log = log
        self._staged: list[RecordedEvent] = []
        self.finished = False
        self._tables_begun = False
        self._undo: list[Callable[[], None]] = []
        self.last_position = 0  # of the last event committed: what commit listeners are told

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Call `undo` if this transaction rolls back, the latest first.

        For bookkeeping kept in process memory beside the log (projection
        checkpoints): it then ends with the transaction as a SQL row would.
        """
        self._undo.append(undo)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_new_events(stream, events, expected_version)
        self._check_active()
        staged_ids = {record.event_id: record for record in self._staged}
        stored = [
            self._log.by_id.get(event.event_id) or staged_ids.get(event.event_id)
            for event in events
        ]
        repeated = repeated_append(stream, events, stored)
        if repeated is not None:
            return repeated
        last, current = self._versions(stream)
        check_expected_version(stream, expected_version, current)
        if not events:
            return AppendResult(stream, current or 0, ())
        position = len(self._log.events) + len(self._staged)
        for offset, event in enumerate(events, start=1):
            self._staged.append(
                RecordedEvent(
                    position=position + offset,
                    stream=stream,
                    version=last + offset,
                    event_id=event.event_id,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=event.data,
                    correlation_id=event.correlation_id,
                    causation_id=event.causation_id,
                    occurred_at=event.occurred_at,
                    headers=event.headers,
                )
            )
        return AppendResult(
            stream, last + len(events), tuple(range(position + 1, position + len(events) + 1))
        )

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        check_read_stream(stream, from_version, limit)
        found = self._log.streams.get(stream)
        records = (found.visible() if found else []) + [
            record for record in self._staged if record.stream == stream
        ]
        if hooks.observer is None:  # as in the store's `read_stream`
            return _slice(records, from_version, backwards, limit)
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            records = _slice(records, from_version, backwards, limit)
            reading.read(len(records))
        return records

    async def lock_stream(self, stream: str) -> None:
        """Nothing to hold: a memory store serves one process, whose blocks take turns."""
        check_stream_name(stream)
        self._check_active()

    async def commit(self) -> None:
        self._check_active()
        log = self._log
        for record in self._staged:
            log.events.append(record)
            found = log.streams.setdefault(record.stream, _Stream())
            found.records.append(record)
            found.deleted = False
            log.by_id[record.event_id] = record
            log.by_correlation.setdefault(record.correlation_id, []).append(record)
            self.last_position = record.position
        self._staged = []
        self._undo = []
        self.finished = True
        if self._tables_begun:
            self._log.tables.execute("COMMIT")

    @asynccontextmanager
    async def batched(self) -> AsyncIterator[None]:
        """Nothing to batch: statements run in this process, with no round trip to save."""
        yield

    async def rollback(self) -> None:
        self._staged = []
        self.finished = True
        undo, self._undo = self._undo, []
        for action in reversed(undo):
            action()
        if self._tables_begun:
            self._log.tables.execute("ROLLBACK")

    async def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self._tables().execute(statement, params)

    async def query(
        self, statement: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        return [tuple(row) for row in self._tables().execute(statement, params).fetchall()]

    def _tables(self) -> sqlite3.Connection:
        """The application tables' connection, in a transaction that ends with this one."""
        self._check_active()
        if not self._tables_begun:
            self._log.tables.execute("BEGIN")
            self._tables_begun = True
        return self._log.tables

    def _versions(self, stream: str) -> tuple[int, int | None]:
        """The stream's last version ever written, and its version as expected versions see it."""
        for record in reversed(self._staged):
            if record.stream == stream:
                return record.version, record.version
        found = self._log.streams.get(stream)
        return (found.last_version, found.version) if found else (0, None)

    def _check_active(self) -> None:
        if self.finished:
            raise TransactionClosed(
                "this transaction has already been committed or rolled back; open a new one"
            )


def _slice(
    records: list[RecordedEvent], from_version: int | None, backwards: bool, limit: int | None
) -> list[RecordedEvent]:
    if not records:
        return []
    # Versions are dense, so version v sits at index v - first.
    first = records[0].version
    if backwards:
        end = len(records) if from_version is None else min(from_version - first + 1, len(records))
        selected = records[: max(end, 0)][::-1]
    else:
        selected = records[max((from_version or first) - first, 0) :]
    return selected if limit is None else selected[:limit]


def _in_current_life(found: _Stream | None, snapshot: Snapshot) -> bool:
    """Whether the stream, not deleted, has reached `snapshot.version` since it was revived."""
    return (
        found is not None
        and found.version is not None
        and found.first_version <= snapshot.version <= found.version
    )
