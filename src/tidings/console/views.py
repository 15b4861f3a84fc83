"""What the pages show of stored things: events and letters as text, ready for the templates.

Payloads are shown as stored (indented JSON), so the console needs none of
the application's event classes. Every value reaches the page through the
templates' autoescaping: an event holding markup shows it as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from tidings.dead_letters import DeadLetter, UndecodedEvent
from tidings.store import RecordedEvent

__all__ = ["EventView", "LetterView", "event_view", "letter_view", "pretty_json"]

_SUMMARY = 120


def pretty_json(data: bytes) -> str:
    """Stored JSON, indented; bytes that are not JSON as they are (decoded leniently)."""
    if not data:
        return ""
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return data.decode(errors="replace")


def _summary(data: bytes) -> str:
    text = data.decode(errors="replace")
    return text if len(text) <= _SUMMARY else text[: _SUMMARY - 1] + "…"


@dataclass(frozen=True, slots=True)
class EventView:
    """One stored event as the pages show it."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    event_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at: str
    summary: str
    data: str
    metadata: str

    def as_json(self) -> dict[str, Any]:
        """The fields the live tail sends, one server-sent event each."""
        return {
            "position": self.position,
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "summary": self.summary,
        }


def event_view(record: RecordedEvent) -> EventView:
    return EventView(
        position=record.position,
        stream=record.stream,
        version=record.version,
        type=record.type,
        schema_version=record.schema_version,
        event_id=str(record.event_id),
        correlation_id=str(record.correlation_id),
        causation_id=None if record.causation_id is None else str(record.causation_id),
        occurred_at=record.occurred_at.isoformat(timespec="milliseconds"),
        summary=_summary(record.data),
        data=pretty_json(record.data),
        metadata=pretty_json(record.headers),
    )


@dataclass(frozen=True, slots=True)
class LetterView:
    """One dead letter as the pages show it."""

    id: str
    handler: str
    parked: bool
    event_type: str
    attempts: int
    failed_at: str
    error: str
    first_error_line: str
    traceback: str
    stream: str | None
    version: int | None
    position: int | None
    event: str
    undecoded: str | None


def letter_view(letter: DeadLetter) -> LetterView:
    envelope = letter.envelope
    message = envelope.message
    undecoded = None
    if isinstance(message, UndecodedEvent):
        event = pretty_json(message.data.encode())
        undecoded = message.reason
    else:
        event = json.dumps(msgspec.to_builtins(message), indent=2, ensure_ascii=False)
    lines = letter.error.splitlines()
    return LetterView(
        id=str(letter.id),
        handler=letter.handler,
        parked=letter.parked,
        event_type=letter.message_type,
        attempts=letter.attempts,
        failed_at=letter.failed_at.isoformat(timespec="seconds"),
        error=letter.error,
        first_error_line=lines[0] if lines else "",
        traceback=letter.traceback,
        stream=envelope.stream,
        version=envelope.version,
        position=envelope.position,
        event=event,
        undecoded=undecoded,
    )
