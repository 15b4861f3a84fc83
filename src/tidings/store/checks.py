"""The rules every backend applies the same way: what a call may pass, expected versions, repeats.

Every store operation checks its arguments here before it touches storage,
so a malformed call raises the same typed error on every backend
(`InvalidType` for a wrong type, `InvalidValue` for a wrong value, both
`TidingsError`s as well as the builtin `TypeError`/`ValueError`) and writes
nothing. The limits are those the strictest backend needs: text without NUL
characters and encodable as UTF-8 (PostgreSQL refuses the one, drivers the
other), names short enough to be indexed, integers within a 64-bit column
(32-bit for schema versions).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

from tidings.errors import EventIdConflict, InvalidType, InvalidValue, WrongExpectedVersion
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamState,
)

__all__ = [
    "MAX_NAME_BYTES",
    "check_expected_version",
    "check_limit",
    "check_list_streams",
    "check_new_events",
    "check_read_all",
    "check_read_correlated",
    "check_read_stream",
    "check_snapshot",
    "check_stream",
    "check_stream_name",
    "repeated_append",
]

MAX_NAME_BYTES = 1024
"""The longest stream name, event type or snapshot shape, in UTF-8 bytes.

Names are indexed, and PostgreSQL indexes no entry above about 2,700 bytes.
"""

_INT64 = 2**63 - 1
_INT32 = 2**31 - 1


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
    """Reject a stream name that cannot be written to, or a malformed expected version."""
    _check_text("stream name", stream, limited=True)
    if not stream or stream.startswith("$"):
        raise InvalidValue(
            f"invalid stream name {stream!r}: a non-empty name not starting with '$'"
        )
    if isinstance(expected, bool) or not isinstance(expected, int | StreamState):
        raise InvalidType(f"expected_version must be a StreamState or an int, got {expected!r}")
    if isinstance(expected, int):
        _check_int("expected_version", expected, _INT64)


def check_new_events(stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
    """Reject a malformed append before it reaches storage."""
    check_stream(stream, expected)
    if isinstance(events, str | bytes) or not isinstance(events, Sequence):
        raise InvalidType(f"events must be a sequence of NewEvent, got {type(events).__name__}")
    for index, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise InvalidType(
                f"event {index} of the batch is a {type(event).__name__}, not a NewEvent "
                "(Codec.new_event makes one of an event's envelope)"
            )
        _check_event(event)
    ids = [event.event_id for event in events]
    if len(set(ids)) != len(ids):
        raise EventIdConflict(f"stream {stream!r}: the batch repeats an event id")


def _check_event(event: NewEvent) -> None:
    """Reject a malformed event, its id named in the message.

    The message is made only on failure: appends check every event, and
    formatting its id costs more than the checks themselves.
    """
    try:
        _check_event_fields(event)
    except (InvalidType, InvalidValue) as exc:
        raise type(exc)(f"event {event.event_id!r}: {exc}") from None


def _check_event_fields(event: NewEvent) -> None:
    if not isinstance(event.event_id, UUID):
        raise InvalidType("event_id must be a UUID")
    _check_text("type", event.type, limited=True)
    if not event.type:
        raise InvalidValue("the type name is empty")
    if isinstance(event.schema_version, bool) or not isinstance(event.schema_version, int):
        raise InvalidType("schema_version must be an int")
    if not 1 <= event.schema_version <= _INT32:
        raise InvalidValue(f"schema_version must be 1 to {_INT32}")
    for name, value in (("data", event.data), ("headers", event.headers)):
        if type(value) is not bytes:
            raise InvalidType(f"{name} must be bytes, got {type(value).__name__}")
    if not isinstance(event.correlation_id, UUID):
        raise InvalidType("correlation_id must be a UUID")
    if event.causation_id is not None and not isinstance(event.causation_id, UUID):
        raise InvalidType("causation_id must be a UUID or None")
    if not isinstance(event.occurred_at, datetime):
        raise InvalidType("occurred_at must be a datetime")
    # Backends keep an instant, not a wall-clock reading: a naive time has no instant.
    if event.occurred_at.utcoffset() is None:
        raise InvalidValue("occurred_at must be timezone-aware")


def check_stream_name(stream: str) -> None:
    """Reject a name no backend can look up (reading a name no stream has finds nothing)."""
    _check_text("stream name", stream, limited=False)


def check_read_stream(stream: str, from_version: int | None, limit: int | None) -> None:
    check_stream_name(stream)
    if from_version is not None:
        _check_int("from_version", from_version, _INT64)
    check_limit(limit)


def check_read_all(
    after: int,
    limit: int | None,
    categories: Collection[str] | None,
    types: Collection[str] | None,
) -> None:
    _check_int("after", after, _INT64)
    check_limit(limit)
    for what, names in (("categories", categories), ("types", types)):
        if names is None:
            continue
        if isinstance(names, str | bytes) or not isinstance(names, Collection):
            raise InvalidType(f"{what} must be a collection of names, got {names!r}")
        for name in names:
            _check_text(f"a name in {what}", name, limited=False)


def check_read_correlated(correlation_id: UUID, limit: int | None) -> None:
    if not isinstance(correlation_id, UUID):
        raise InvalidType(f"correlation_id must be a UUID, got {correlation_id!r}")
    check_limit(limit)


def check_list_streams(category: str | None, after: str | None, limit: int) -> None:
    if category is not None:
        _check_text("category", category, limited=False)
    if after is not None:
        _check_text("after", after, limited=False)
    if limit is None:
        raise InvalidType("limit of list_streams must be an int")
    check_limit(limit)


def check_snapshot(snapshot: Snapshot) -> None:
    if not isinstance(snapshot, Snapshot):
        raise InvalidType(f"expected a Snapshot, got {type(snapshot).__name__}")
    check_stream(snapshot.stream, StreamState.ANY)
    _check_int("snapshot version", snapshot.version, _INT64)
    _check_text("snapshot shape", snapshot.shape, limited=True)
    if type(snapshot.data) is not bytes:
        raise InvalidType(f"snapshot data must be bytes, got {type(snapshot.data).__name__}")


def check_limit(limit: int | None) -> None:
    """Reject a negative or non-integer read limit (None reads without limit)."""
    if limit is not None:
        _check_int("limit", limit, _INT64)


def _check_int(what: str, value: int, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise InvalidValue(f"{what} cannot be negative, got {value}")
    if value > top:
        raise InvalidValue(f"{what} must be at most {top}, got {value}")


def _check_text(what: str, value: str, *, limited: bool) -> None:
    """Text every backend stores and finds alike: a str, no NUL, valid UTF-8, maybe not too long."""
    if not isinstance(value, str):
        raise InvalidType(f"{what} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidValue(f"invalid {what} {value!r}: it contains a NUL character")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise InvalidValue(f"invalid {what} {value!r}: it is not valid Unicode text") from None
    if limited and size > MAX_NAME_BYTES:
        raise InvalidValue(
            f"invalid {what} {value[:40]!r}…: {size} bytes long, at most {MAX_NAME_BYTES}"
        )


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
