"""Structured logs: the ids of the message concerned as `extra` fields, and a JSON formatter.

The records tidings logs where something goes wrong with a message (a
handler failing and retried, a dead letter, a projection parked) carry, besides
their text, the message's ids as attributes of the `logging.LogRecord`:
`message_id`, `message_type`, `correlation_id`, `causation_id`, `stream`,
`position` and `handler` (those known). Any formatter can print them
(`%(correlation_id)s`); `JsonFormatter` writes each record as one JSON object
with all of them, for a log collector to index. Both are stdlib logging only.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from tidings.messages import Envelope, Message
from tidings.store.records import RecordedEvent

__all__ = ["FIELDS", "JsonFormatter", "envelope_fields", "record_fields"]

FIELDS = (
    "message_id",
    "message_type",
    "correlation_id",
    "causation_id",
    "stream",
    "position",
    "handler",
)
"""The `extra` fields tidings sets on the records it logs about a message."""

# What every LogRecord has; anything else on a record came in `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def envelope_fields(envelope: Envelope[Message], handler: str | None = None) -> dict[str, Any]:
    """The `extra` of a record about `envelope` (and the handler that had it)."""
    fields: dict[str, Any] = {
        "message_id": str(envelope.message_id),
        "message_type": type(envelope.message).__name__,
        "correlation_id": str(envelope.correlation_id),
        "causation_id": None if envelope.causation_id is None else str(envelope.causation_id),
    }
    if envelope.stream is not None:
        fields["stream"] = envelope.stream
        fields["position"] = envelope.position
    if handler is not None:
        fields["handler"] = handler
    return fields


def record_fields(record: RecordedEvent, handler: str | None = None) -> dict[str, Any]:
    """The `extra` of a record about a recorded event (and the handler that had it)."""
    fields: dict[str, Any] = {
        "message_id": str(record.event_id),
        "message_type": record.type,
        "correlation_id": str(record.correlation_id),
        "causation_id": None if record.causation_id is None else str(record.causation_id),
        "stream": record.stream,
        "position": record.position,
    }
    if handler is not None:
        fields["handler"] = handler
    return fields


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON: time, level, logger, message and every extra.

    ::

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.getLogger("tidings").addHandler(handler)

    `time` is ISO 8601 in UTC; an exception adds `exception` (the formatted
    traceback) and `error` (its type's name). Values JSON cannot hold are
    written as their `str`.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = type(record.exc_info[1]).__name__
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)
