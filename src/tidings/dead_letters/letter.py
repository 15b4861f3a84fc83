"""A dead letter: an event one handler failed on after every attempt, and its stored form."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from tidings.codec import Codec
from tidings.errors import EventDecodeError
from tidings.messages import Envelope, Event, Message, new_id, utc_now
from tidings.store.records import RecordedEvent

__all__ = ["DeadLetter", "UndecodedEvent", "letter_envelope"]

_headers_decoder = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that one handler failed to process after every attempt.

    `parked` marks the event a projection is stopped on (its handler is
    `projection:<name>`): the projection waits for it to be retried
    (resumed) or dropped (skipped). Every other letter was moved past.
    """

    id: UUID
    envelope: Envelope[Message]
    handler: str
    error: str
    traceback: str
    attempts: int
    failed_at: datetime
    parked: bool = False

    @property
    def correlation_id(self) -> UUID:
        return self.envelope.correlation_id

    @property
    def message_type(self) -> str:
        """The message's stored type name (its class name for messages that are not events)."""
        message = self.envelope.message
        if isinstance(message, UndecodedEvent):
            return message.type_name
        if isinstance(message, Event):
            return type(message).__event_type__
        return type(message).__name__

    @staticmethod
    def of(
        envelope: Envelope[Message],
        handler: str,
        error: BaseException,
        attempts: int,
        *,
        parked: bool = False,
    ) -> DeadLetter:
        return DeadLetter(
            id=new_id(),
            envelope=envelope,
            handler=handler,
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
            attempts=attempts,
            failed_at=utc_now(),
            parked=parked,
        )


@dataclass(frozen=True, slots=True)
class UndecodedEvent(Event, type_name="tidings.UndecodedEvent"):
    """A stored dead letter's event whose class is not loaded here, kept as its JSON.

    Listing and dropping such letters works anywhere; retrying one needs the
    class (import the application first).
    """

    type_name: str
    schema_version: int
    data: str
    reason: str


def letter_envelope(record: RecordedEvent, codec: Codec) -> Envelope[Message]:
    """The envelope of a stored event; its JSON as an `UndecodedEvent` when it cannot be decoded."""
    try:
        return codec.envelope(record)
    except EventDecodeError as exc:
        message = UndecodedEvent(record.type, record.schema_version, record.data.decode(), str(exc))
        return Envelope(
            message,
            record.event_id,
            record.correlation_id,
            record.causation_id,
            record.occurred_at,
            _headers_decoder.decode(record.headers) if record.headers else {},
            record.stream,
            record.version,
            record.position,
        )


# Columns of a stored dead letter, after its id, in the order `letter_values` gives them.
LETTER_COLUMNS = (
    "handler, error, traceback, attempts, failed_at, message_id, message_type, schema_version, "
    "data, correlation_id, causation_id, occurred_at, headers, stream, version, position, parked"
)


def letter_values(letter: DeadLetter, codec: Codec) -> list[Any]:
    """The row of `letter`, its id first; only events can be stored."""
    envelope = letter.envelope
    message = envelope.message
    if not isinstance(message, Event):
        raise TypeError(f"only events are dead-lettered, not {type(message).__name__}")
    if isinstance(message, UndecodedEvent):
        # Kept as the log has it, so that it decodes once its class is loaded.
        type_name, schema_version, data = (
            message.type_name,
            message.schema_version,
            message.data.encode(),
        )
    else:
        stored = codec.new_event(envelope)  # type: ignore[arg-type]
        type_name, schema_version, data = stored.type, stored.schema_version, stored.data
    headers = msgspec.json.encode(envelope.headers) if envelope.headers else b""
    return [
        str(letter.id),
        letter.handler,
        letter.error,
        letter.traceback,
        letter.attempts,
        letter.failed_at.isoformat(timespec="microseconds"),
        str(envelope.message_id),
        type_name,
        schema_version,
        data,
        str(envelope.correlation_id),
        None if envelope.causation_id is None else str(envelope.causation_id),
        envelope.occurred_at.isoformat(),
        headers,
        envelope.stream,
        envelope.version,
        envelope.position,
        int(letter.parked),
    ]


def letter_from_row(row: tuple[Any, ...], codec: Codec) -> DeadLetter:
    """The dead letter of a stored row (id first, then `LETTER_COLUMNS`)."""
    (
        letter_id,
        handler,
        error,
        trace,
        attempts,
        failed_at,
        message_id,
        message_type,
        schema_version,
        data,
        correlation_id,
        causation_id,
        occurred_at,
        headers,
        stream,
        version,
        position,
        parked,
    ) = row
    data = bytes(data)
    message: Event
    try:
        message = codec.decode(message_type, int(schema_version), data)
    except EventDecodeError as exc:
        message = UndecodedEvent(message_type, int(schema_version), data.decode(), str(exc))
    envelope: Envelope[Message] = Envelope(
        message,
        UUID(message_id),
        UUID(correlation_id),
        None if causation_id is None else UUID(causation_id),
        datetime.fromisoformat(occurred_at),
        _headers_decoder.decode(bytes(headers)) if headers else {},
        stream,
        version,
        position,
    )
    return DeadLetter(
        id=UUID(letter_id),
        envelope=envelope,
        handler=handler,
        error=error,
        traceback=trace,
        attempts=int(attempts),
        failed_at=datetime.fromisoformat(failed_at),
        parked=bool(parked),
    )
