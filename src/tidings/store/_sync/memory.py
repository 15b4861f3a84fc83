# Generated from src/tidings/store/_async/memory.py by tools/unasync.py: edit that file, then run `make unasync`.
"""An event store in memory: for tests and examples, with the same semantics as the durable ones."""

from __future__ import annotations

from collections.abc import Iterator, Collection, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import threading

from tidings.store.checks import check_expected_version, check_new_events, repeated_append
from tidings.store.records import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamState
from tidings.errors import StoreUnavailable

__all__ = ["MemoryStore"]


@dataclass
class _Log:
    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    by_id: dict[object, RecordedEvent] = field(default_factory=dict)


class MemoryStore:
    """Keeps the log in process memory; one writing transaction at a time, readers never wait."""

    def __init__(self) -> None:
        self._log = _Log()
        self._write_lock = threading.Lock()
        self._closed = False

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        self._check_open()
        with self._write_lock:
            tx = MemoryTransaction(self._log)
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise
            if not tx.finished:
                tx.commit()

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        with self.transaction() as tx:
            return tx.append(stream, events, expected_version)

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        self._check_open()
        return _slice(self._log.streams.get(stream, []), from_version, backwards, limit)

    def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        self._check_open()
        # Positions are 1-based and dense, so position p sits at index p - 1.
        selected: list[RecordedEvent] = []
        for record in self._log.events[max(after, 0) :]:
            if categories is not None and record.category not in categories:
                continue
            if types is not None and record.type not in types:
                continue
            selected.append(record)
            if limit is not None and len(selected) >= limit:
                break
        return selected

    def stream_version(self, stream: str) -> int | None:
        self._check_open()
        records = self._log.streams.get(stream)
        return records[-1].version if records else None

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")


class MemoryTransaction:
    """Stages appends; `commit` publishes them to the log all at once."""

    def __init__(self, log: _Log) -> None:
        self._log = log
        self._staged: list[RecordedEvent] = []
        self.finished = False

    def append(
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
        current = self._version(stream)
        check_expected_version(stream, expected_version, current)
        version = current or 0
        position = len(self._log.events) + len(self._staged)
        for offset, event in enumerate(events, start=1):
            self._staged.append(
                RecordedEvent(
                    position=position + offset,
                    stream=stream,
                    version=version + offset,
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
            stream,
            version + len(events) if events else version,
            tuple(range(position + 1, position + len(events) + 1)),
        )

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        records = self._log.streams.get(stream, []) + [
            record for record in self._staged if record.stream == stream
        ]
        return _slice(records, from_version, backwards, limit)

    def commit(self) -> None:
        self._check_active()
        log = self._log
        for record in self._staged:
            log.events.append(record)
            log.streams.setdefault(record.stream, []).append(record)
            log.by_id[record.event_id] = record
        self._staged = []
        self.finished = True

    def rollback(self) -> None:
        self._staged = []
        self.finished = True

    def _version(self, stream: str) -> int | None:
        for record in reversed(self._staged):
            if record.stream == stream:
                return record.version
        committed = self._log.streams.get(stream)
        return committed[-1].version if committed else None

    def _check_active(self) -> None:
        if self.finished:
            raise RuntimeError("this transaction has already been committed or rolled back")


def _slice(
    records: list[RecordedEvent], from_version: int | None, backwards: bool, limit: int | None
) -> list[RecordedEvent]:
    # Versions are 1-based and dense, so version v sits at index v - 1.
    if backwards:
        end = len(records) if from_version is None else min(from_version, len(records))
        selected = records[:end][::-1]
    else:
        selected = records[max((from_version or 1) - 1, 0) :]
    return selected if limit is None else selected[:limit]
