"""How the commands show events: decoded payloads, rich tables and lines, JSON lines."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.codec import Codec
from tidings.errors import EventDecodeError
from tidings.store import RecordedEvent

__all__ = [
    "Decoding",
    "as_json",
    "event_table",
    "event_text",
    "payload",
    "payload_text",
    "stdout",
    "time_text",
    "write_json_lines",
]

_encoder = msgspec.json.Encoder(decimal_format="string")
_DATA_MIN_WIDTH = 16
_UNBOUNDED = 1_000_000  # columns: wider than any line the commands print


def stdout() -> Console:
    """A console on the current standard output (which tests and pipes may replace).

    Output to a pipe or a file is not cut to the 80 columns Rich assumes
    there: each line is as long as it needs to be, so `grep` and `less`
    see whole stream names and payloads. `COLUMNS` still sets a width.
    """
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = _UNBOUNDED
    return console


@dataclass(frozen=True, slots=True)
class Decoding:
    """How a command shows payloads: the codec that decodes them, and whether to mark failures.

    A command asked to decode (`--import`, `--app`) marks each payload it
    could not decode, with the reason; one that was not shows what is stored.
    """

    codec: Codec
    mark: bool = False


def payload(record: RecordedEvent, decoding: Decoding) -> tuple[Any, str | None]:
    """The event's data, and why it could not be decoded if it was not.

    Decoded through its class (upcast to the current shape) when one is
    loaded, else the stored JSON as it is. Any failure to decode (no class,
    no upcaster, an upcaster that raises, data that does not fit) shows the
    stored data: a command that reads the log does not stop at one event.
    """
    try:
        event = decoding.codec.decode(record.type, record.schema_version, record.data)
    except Exception as exc:  # the application's upcasters may raise anything
        reason = str(exc) if isinstance(exc, EventDecodeError) else f"{type(exc).__name__}: {exc}"
        try:
            return msgspec.json.decode(record.data), reason
        except msgspec.DecodeError:
            return record.data.decode("utf-8", errors="replace"), reason
    return msgspec.to_builtins(_all_fields(event)), None


def _all_fields(value: Any) -> Any:
    """Dataclasses as dicts of every field: msgspec leaves out fields at their default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _all_fields(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple | set | frozenset):
        return [_all_fields(item) for item in value]
    if isinstance(value, dict):
        return {key: _all_fields(item) for key, item in value.items()}
    return value


def payload_text(record: RecordedEvent, decoding: Decoding) -> str:
    """The payload as one line of JSON, after `(undecoded: reason)` when it is marked so."""
    data, undecoded = payload(record, decoding)
    text = _encoder.encode(data).decode()
    return f"(undecoded: {undecoded}) {text}" if undecoded and decoding.mark else text


def time_text(record: RecordedEvent) -> str:
    """The time in UTC to the millisecond: `2026-05-04T09:30:00.125Z`."""
    return record.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def as_json(record: RecordedEvent, decoding: Decoding) -> bytes:
    """The event as a JSON object; `undecoded` holds the reason when it is marked so."""
    headers: Any = msgspec.json.decode(record.headers) if record.headers else {}
    data, undecoded = payload(record, decoding)
    marked = {"undecoded": undecoded} if undecoded and decoding.mark else {}
    return _encoder.encode(
        {
            "position": record.position,
            "stream": record.stream,
            "version": record.version,
            "type": record.type,
            "schema_version": record.schema_version,
            "event_id": record.event_id,
            "correlation_id": record.correlation_id,
            "causation_id": record.causation_id,
            "occurred_at": record.occurred_at,
            "headers": headers,
            "data": data,
            **marked,
        }
    )


def write_json_lines(records: Iterable[RecordedEvent], decoding: Decoding) -> None:
    """Write one JSON object per event to standard output, and flush it for pipes."""
    out = sys.stdout
    for record in records:
        out.write(as_json(record, decoding).decode())
        out.write("\n")
    out.flush()


def event_table(records: Iterable[RecordedEvent], decoding: Decoding, width: int) -> Table:
    """One event a line, in `width` columns; payloads too long end in an ellipsis (see --json).

    A narrow terminal drops the correlation id, then the time, rather than
    cut every column short: `--json` and `trace` show them in full.
    """
    records = list(records)
    columns = {
        "position": [str(r.position) for r in records],
        "stream": [r.stream for r in records],
        "version": [str(r.version) for r in records],
        "type": [r.type for r in records],
        "time": [time_text(r) for r in records],
        "correlation": [str(r.correlation_id) for r in records],
    }
    payloads = [payload_text(record, decoding) for record in records]

    def used() -> int:  # each column pads by 2
        return sum(2 + max(len(name), *map(len, cells)) for name, cells in columns.items())

    for optional in ("correlation", "time"):
        if used() + _DATA_MIN_WIDTH + 2 > width:
            del columns[optional]
    table = Table(box=None, header_style="bold")
    for header in columns:
        if header in ("position", "version"):
            table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
        else:
            table.add_column(header, no_wrap=True)
    table.add_column(
        "data",
        no_wrap=True,
        overflow="ellipsis",
        max_width=max(_DATA_MIN_WIDTH, width - used() - 2),
    )
    for index, payload in enumerate(payloads):
        table.add_row(*(cells[index] for cells in columns.values()), payload)
    return table


def event_text(record: RecordedEvent, decoding: Decoding) -> Text:
    """One event on one line, as `tail` prints it."""
    return Text.assemble(
        (f"{record.position:>8}", "bold"),
        "  ",
        (f"{record.stream}@{record.version}", "cyan"),
        "  ",
        (record.type, "green"),
        "  ",
        (time_text(record), "dim"),
        "  ",
        (str(record.correlation_id), "dim"),
        "  ",
        payload_text(record, decoding),
    )
