"""What the store keeps: events as bytes with their envelope, and expected versions."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import msgspec

__all__ = [
    "AppendResult",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "StreamInfo",
    "StreamState",
    "Watermark",
    "category_of",
]


class StreamState(enum.Enum):
    """Expected versions that are not a number."""

    ANY = "any"
    NO_STREAM = "no stream"
    STREAM_EXISTS = "stream exists"

    def __str__(self) -> str:
        return self.value


ExpectedVersion = int | StreamState
"""`StreamState` or an exact version: the number of events the stream holds (0 = none yet)."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to append: encoded data plus its envelope's metadata."""

    event_id: UUID
    type: str
    schema_version: int
    data: bytes
    correlation_id: UUID
    causation_id: UUID | None
    occurred_at: datetime
    headers: bytes = b""


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: its stream version (from 1) and its global position (from 1).

    A frozen msgspec struct rather than a dataclass: reads make one per event,
    and a struct is made several times faster than a frozen dataclass.
    """

    position: int
    stream: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: bytes
    correlation_id: UUID
    causation_id: UUID | None
    occurred_at: datetime
    headers: bytes = b""

    @property
    def category(self) -> str:
        """The part of the stream name before the first dash (`Order-42` → `Order`)."""
        return category_of(self.stream)


def category_of(stream: str) -> str:
    """The category of a stream: its name up to the first dash (`Order-42` → `Order`)."""
    return stream.partition("-")[0]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as `list_streams` reports it.

    `version` is the last version written, deleted or not: appends number on
    from it. Reads return versions from `first_version`, which is 1 unless the
    stream was soft-deleted, then the version after the one it was deleted at.
    """

    name: str
    version: int
    first_version: int
    deleted: bool

    @property
    def category(self) -> str:
        """The part of the name before the first dash (`Order-42` → `Order`)."""
        return category_of(self.name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's encoded state as of `version` of its stream.

    `shape` names the layout of `data` (see `tidings.snapshots`), so a loader
    can tell a snapshot of an older class apart and replay instead.
    """

    stream: str
    version: int
    shape: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: the stream's new version and the events' global positions."""

    stream: str
    version: int
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Watermark:
    """How far readers of `$all` are held back behind what has committed.

    `head` is the last position `read_all` returns now (`head_position()`);
    `last_position` the last position committed, readable or not. The
    `held_back` events between them have committed, but a transaction
    still open may yet commit events below them, so no reader is shown them
    until it ends; `held_for` is how long, in seconds, that oldest open
    transaction has run (0.0 when nothing is held back; None when the
    server does not show this session its start). Backends that commit one
    transaction at a time (memory, SQLite) never hold readers back.
    """

    head: int
    last_position: int
    held_back: int
    held_for: float | None
