"""Rules every backend applies the same way: expected versions and repeated event ids."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from tidings.errors import EventIdConflict, WrongExpectedVersion
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)

__all__ = [
    "check_expected_version",
    "check_limit",
    "check_new_events",
    "check_stream",
    "repeated_append",
]


def check_expected_version(stream: str, expected: ExpectedVersion, current: int | None) -> None:
    """Raise `WrongExpectedVersion` unless a stream at `current` (None: absent) meets `expected`."""
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM:
        ok = current is None
    elif expected is StreamState.STREAM_EXISTS:
        ok = current is not None
    else:
        ok = (current or 0) == expected
    if not ok:
        raise WrongExpectedVersion(stream, expected, current)


def check_stream(stream: str, expected: ExpectedVersion) -> None:
    """Reject a malformed stream name or expected version before it reaches storage."""
    if not isinstance(stream, str) or not stream or stream.startswith("$"):
        raise ValueError(f"invalid stream name {stream!r}: a non-empty name not starting with '$'")
    if isinstance(expected, bool) or not isinstance(expected, int | StreamState):
        raise TypeError(f"expected_version must be a StreamState or an int, got {expected!r}")
    if isinstance(expected, int) and expected < 0:
        raise ValueError(f"expected_version cannot be negative, got {expected}")


def check_new_events(stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
    """Reject malformed appends before they reach storage."""
    check_stream(stream, expected)
    ids = [event.event_id for event in events]
    if len(set(ids)) != len(ids):
        raise EventIdConflict(f"stream {stream!r}: the batch repeats an event id")
    for event in events:
        # Backends keep an instant, not a wall-clock reading: a naive time has no instant.
        if event.occurred_at.utcoffset() is None:
            raise ValueError(f"event {event.event_id}: occurred_at must be timezone-aware")


def check_limit(limit: int | None) -> None:
    """Reject a negative read limit (None reads without limit)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit cannot be negative, got {limit}")


def repeated_append(
    stream: str, events: Sequence[NewEvent], stored: Sequence[RecordedEvent | None]
) -> AppendResult | None:
    """If `events` were all stored before as one batch of `stream`, where they landed.

    `stored` holds, for each new event, the stored event with its id or None.
    Returns None when none was stored; raises `EventIdConflict` on a partial overlap.
    """
    found = [record for record in stored if record is not None]
    if not found:
        return None
    same_batch = (
        len(found) == len(events)
        and all(record.stream == stream for record in found)
        and all(b.version == a.version + 1 for a, b in itertools.pairwise(found))
    )
    if not same_batch:
        raise EventIdConflict(
            f"stream {stream!r}: {len(found)} of {len(events)} event ids were already stored "
            "in another batch or stream"
        )
    return AppendResult(stream, found[-1].version, tuple(record.position for record in found))
