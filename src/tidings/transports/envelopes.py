"""Event envelopes as broker messages and back: the event's JSON as body, its envelope as headers.

The body is the event as the log stores it (the codec's JSON, at the
class's current schema version); the headers carry what the envelope says
about it, so a consumer needs nothing else to rebuild the same envelope:
the same message id (to deduplicate by), correlation and causation, and
where the event stands in the producer's log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import msgspec

from tidings.codec import Codec
from tidings.dead_letters.letter import UndecodedEvent
from tidings.errors import TidingsError
from tidings.messages import Envelope, Event, Message, new_id, utc_now
from tidings.store.records import category_of
from tidings.transports.binding import BrokerMessage, subject_for

__all__ = ["MalformedMessage", "decoded", "encoded", "undecoded"]


MESSAGE_ID = "tidings-message-id"
TYPE = "tidings-type"
SCHEMA_VERSION = "tidings-schema-version"
CORRELATION_ID = "tidings-correlation-id"
CAUSATION_ID = "tidings-causation-id"
OCCURRED_AT = "tidings-occurred-at"
STREAM = "tidings-stream"
VERSION = "tidings-version"
POSITION = "tidings-position"
HEADERS = "tidings-headers"

T = TypeVar("T")

_headers_decoder = msgspec.json.Decoder(dict[str, str])


class MalformedMessage(TidingsError, ValueError):
    """A broker message that is not an encoded tidings event: a header is missing or invalid."""


def encoded(envelope: Envelope[Event], codec: Codec) -> BrokerMessage:
    """The broker message of a stored event's envelope, to the subject of its category and type."""
    event = envelope.message
    cls = type(event)
    headers = {
        MESSAGE_ID: str(envelope.message_id),
        TYPE: cls.__event_type__,
        SCHEMA_VERSION: str(cls.__event_version__),
        CORRELATION_ID: str(envelope.correlation_id),
        OCCURRED_AT: envelope.occurred_at.isoformat(),
    }
    if envelope.causation_id is not None:
        headers[CAUSATION_ID] = str(envelope.causation_id)
    if envelope.stream is not None:
        headers[STREAM] = envelope.stream
        headers[VERSION] = str(envelope.version)
        headers[POSITION] = str(envelope.position)
    if envelope.headers:
        headers[HEADERS] = msgspec.json.encode(envelope.headers).decode()
    category = category_of(envelope.stream or "")
    return BrokerMessage(subject_for(category, cls.__event_type__), codec.encode(event), headers)


def decoded(message: BrokerMessage, codec: Codec) -> Envelope[Event]:
    """The envelope `encoded` made; `MalformedMessage` or `EventDecodeError` if there is none."""
    headers = message.headers
    type_name = _required(headers, TYPE)
    event = codec.decode(type_name, _number(headers, SCHEMA_VERSION), message.body)
    message_id = _uuid(headers, MESSAGE_ID)
    try:
        occurred_at = datetime.fromisoformat(_required(headers, OCCURRED_AT))
        extra = _headers_decoder.decode(headers[HEADERS]) if HEADERS in headers else {}
    except (ValueError, msgspec.DecodeError) as exc:
        raise MalformedMessage(f"message {message_id}: {exc}") from exc
    stream = headers.get(STREAM)
    return Envelope(
        event,
        message_id,
        _uuid(headers, CORRELATION_ID),
        _uuid(headers, CAUSATION_ID) if CAUSATION_ID in headers else None,
        occurred_at,
        extra,
        stream,
        _number(headers, VERSION) if stream is not None else None,
        _number(headers, POSITION) if stream is not None else None,
    )


def undecoded(message: BrokerMessage, error: Exception) -> Envelope[Message]:
    """An envelope for a message `decoded` refused, to dead-letter it as an `UndecodedEvent`.

    What the headers say is kept where it reads; the rest is made up (a new
    id, now), since a dead letter needs an envelope all the same.
    """
    headers = message.headers
    message_id = _kept(_uuid, headers, MESSAGE_ID) or new_id()
    event = UndecodedEvent(
        headers.get(TYPE, "?"),
        _kept(_number, headers, SCHEMA_VERSION) or 0,
        message.body.decode(errors="replace"),
        f"{type(error).__name__}: {error}",
    )
    return Envelope(
        event,
        message_id,
        _kept(_uuid, headers, CORRELATION_ID) or message_id,
        _kept(_uuid, headers, CAUSATION_ID),
        utc_now(),
    )


def _required(headers: Mapping[str, str], key: str) -> str:
    value = headers.get(key)
    if not value:
        raise MalformedMessage(f"the broker message has no {key} header")
    return value


def _uuid(headers: Mapping[str, str], key: str) -> UUID:
    value = _required(headers, key)
    try:
        return UUID(value)
    except ValueError:
        raise MalformedMessage(f"header {key} is not a UUID: {value!r}") from None


def _number(headers: Mapping[str, str], key: str) -> int:
    value = _required(headers, key)
    try:
        return int(value)
    except ValueError:
        raise MalformedMessage(f"header {key} is not a number: {value!r}") from None


def _kept(
    read: Callable[[Mapping[str, str], str], T], headers: Mapping[str, str], key: str
) -> T | None:
    """What `read` makes of a header, or None where it is missing or invalid."""
    try:
        return read(headers, key)
    except MalformedMessage:
        return None
