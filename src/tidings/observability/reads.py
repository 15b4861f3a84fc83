"""Spans of reading the log, named and attributed by the database semantic conventions.

- Each read of a store within a trace is a span `<operation> <collection>`
  (kind CLIENT):
  `read_stream Order-o-1`, or `read_all $all` for a page of the whole log,
  with `db.system` (`memory`, `sqlite`, `postgresql`), `db.operation.name`,
  `db.collection.name` (the stream, or `$all`) and
  `db.response.returned_rows` (the number of events read). A read outside
  any trace starts none: a projection runner or a relay polls `$all` many
  times a second, and each poll would be a trace of one span, nearly all of
  them empty. Their batches have spans of their own.
- Each aggregate a repository loads is a span `load <stream>` (INTERNAL)
  around its reads, with `tidings.aggregate`, `tidings.stream`,
  `tidings.version` (absent when there is no such aggregate) and
  `tidings.replayed` (the events applied).
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

__all__ = ["loading", "reading"]


class _Read:
    """A read (or a load) under its span, current from enter to exit.

    Not a generator-based context manager: a read of the memory store costs
    less than entering one.
    """

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token: Token[Context] | None = None

    def __enter__(self) -> _Read:
        self.token = attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self.token is not None, "exited before entered"
        detach(self.token)
        span = self.span
        if error is not None and span.is_recording():
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    def read(self, count: int) -> None:
        self.span.set_attribute("db.response.returned_rows", count)

    def loaded(self, version: int | None, replayed: int) -> None:
        if version is not None:
            self.span.set_attribute("tidings.version", version)
        self.span.set_attribute("tidings.replayed", replayed)


class _Untraced:
    """A read outside any trace: nothing recorded."""

    __slots__ = ()

    def __enter__(self) -> _Untraced:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass

    def read(self, count: int) -> None:
        pass


_UNTRACED = _Untraced()


def reading(tracer: Tracer, system: str, operation: str, collection: str) -> _Read | _Untraced:
    if not trace.get_current_span().get_span_context().is_valid:
        return _UNTRACED
    attributes: dict[str, AttributeValue] = {
        "db.system": system,
        "db.operation.name": operation,
        "db.collection.name": collection,
    }
    return _Read(
        tracer.start_span(f"{operation} {collection}", kind=SpanKind.CLIENT, attributes=attributes)
    )


def loading(tracer: Tracer, aggregate: str, stream: str) -> _Read:
    attributes: dict[str, AttributeValue] = {
        "tidings.aggregate": aggregate,
        "tidings.stream": stream,
    }
    return _Read(tracer.start_span(f"load {stream}", kind=SpanKind.INTERNAL, attributes=attributes))
