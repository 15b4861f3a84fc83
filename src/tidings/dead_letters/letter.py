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

__all__ = ["DeadLetter", "UndecodedEvent"]

_headers_decoder = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that one handler failed to process after every attempt."""

    id: UUID
    envelope: Envelope[Message]
    handler: str
    error: str
    traceback: str
    attempts: int
    failed_at: datetime

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
        envelope: Envelope[Message], handler: str, error: BaseException, attempts: int
    ) -> DeadLetter:
        return DeadLetter(
            id=new_id(),
            envelope=envelope,
            handler=handler,
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
            attempts=attempts,
            failed_at=utc_now(),
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


# Columns of a stored dead letter, after its id, in the order `letter_values` gives them.
LETTER_COLUMNS = (
    "handler, error, traceback, attempts, failed_at, message_id, message_type, schema_version, "
    "data, correlation_id, causation_id, occurred_at, headers, stream, version, position"
)


def letter_values(letter: DeadLetter, codec: Codec) -> list[Any]:
    """The row of `letter`, its id first; only events can be stored."""
    envelope = letter.envelope
    message = envelope.message
    if not isinstance(message, Event):
        raise TypeError(f"only events are dead-lettered, not {type(message).__name__}")
    stored = codec.new_event(envelope)  # type: ignore[arg-type]
    return [
        str(letter.id),
        letter.handler,
        letter.error,
        letter.traceback,
        letter.attempts,
        letter.failed_at.isoformat(timespec="microseconds"),
        str(envelope.message_id),
        stored.type,
        stored.schema_version,
        stored.data,
        str(envelope.correlation_id),
        None if envelope.causation_id is None else str(envelope.causation_id),
        envelope.occurred_at.isoformat(),
        stored.headers,
        envelope.stream,
        envelope.version,
        envelope.position,
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
    )
