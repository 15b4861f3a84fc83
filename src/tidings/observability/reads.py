"""Spans of reading the log, named and attributed by the database semantic conventions.

- Each read of a store is a span `<operation> <collection>` (kind CLIENT):
  `read_stream Order-o-1`, or `read_all $all` for a page of the whole log,
  with `db.system` (`memory`, `sqlite`, `postgresql`), `db.operation.name`,
  `db.collection.name` (the stream, or `$all`) and
  `db.response.returned_rows` (the number of events read).
- Each aggregate a repository loads is a span `load <stream>` (INTERNAL)
  around its reads, with `tidings.aggregate`, `tidings.stream`,
  `tidings.version` (absent when there is no such aggregate) and
  `tidings.replayed` (the events applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

__all__ = ["loading", "reading"]


class _Read:
    """A store read under its span."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def read(self, count: int) -> None:
        self.span.set_attribute("db.response.returned_rows", count)

    def loaded(self, version: int | None, replayed: int) -> None:
        if version is not None:
            self.span.set_attribute("tidings.version", version)
        self.span.set_attribute("tidings.replayed", replayed)


@contextmanager
def reading(tracer: Tracer, system: str, operation: str, collection: str) -> Iterator[_Read]:
    attributes: dict[str, AttributeValue] = {
        "db.system": system,
        "db.operation.name": operation,
        "db.collection.name": collection,
    }
    with tracer.start_as_current_span(
        f"{operation} {collection}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield _Read(span)


@contextmanager
def loading(tracer: Tracer, aggregate: str, stream: str) -> Iterator[_Read]:
    attributes: dict[str, AttributeValue] = {
        "tidings.aggregate": aggregate,
        "tidings.stream": stream,
    }
    with tracer.start_as_current_span(
        f"load {stream}", kind=SpanKind.INTERNAL, attributes=attributes
    ) as span:
        yield _Read(span)
