"""OpenTelemetry spans for what tidings does, named by the messaging semantic conventions.

- Each message the bus dispatches (command, query, event) is a span
  `process <MessageType>` around all its handlers. An event that carries a
  trace context in its headers (one appended by an instrumented unit of work,
  or received from a transport) continues that trace: its span is a child of
  the span that appended it. Otherwise it is a child of the current span, such
  as a web request's.
- Each unit of work commit is a span `send <stream>` (kind PRODUCER); the W3C
  `traceparent` (and `tracestate`) of that span, written by the global
  text-map propagator, goes into the headers of every event it appends, and is
  stored with them.
- Each batch a projection (a durable handler, a process manager, the outbox
  relay) handles is a span `process <projection>` (kind CONSUMER), linked to
  the span that appended each of its events.
- Each run of a saga's step is a span `step <saga>.<step>`.
- Reads of the log and aggregates loaded: `tidings.observability.reads`;
  messages relayed to a broker and received from one:
  `tidings.observability.brokers`.

Every span has `messaging.system` "tidings" and `messaging.operation.type`
("process", or "send" for appends); the message's spans add
`messaging.message.id`, `messaging.message.conversation_id` (the correlation
id) and `messaging.destination.name` (the event's stream, or the message type).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import Token
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from tidings.errors import ConcurrencyError
from tidings.messages import Command, Envelope, Event, Message
from tidings.observability import brokers, reads
from tidings.observability.hooks import Loading, Publishing, Reading
from tidings.observability.metrics import Instruments
from tidings.store.records import RecordedEvent, category_of
from tidings.transports.binding import BrokerMessage

__all__ = ["AsyncObserveMessages", "ObserveMessages", "Telemetry"]

SYSTEM = "tidings"
# A span keeps at most this many links (the SDK's default limit).
MAX_LINKS = 128


class Telemetry:
    """The `Observer` that records spans and metrics, installed by `instrument`."""

    def __init__(self, tracer: Tracer, instruments: Instruments) -> None:
        self.tracer = tracer
        self.instruments = instruments

    def begin(self, envelope: Envelope[Message]) -> _Dispatching:
        """Start the span of one message the bus dispatches, and make it current.

        Not a context manager: the middleware calls `begin` and `end` itself,
        which costs a third of entering a generator-based one.
        """
        message = envelope.message
        type_name = type(message).__name__
        headers = envelope.headers
        parent: Context | None = None
        # A message a consumer received is the child of the consumer's span, current now.
        if headers and "traceparent" in headers and brokers.received.get() != envelope.message_id:
            parent = propagate.extract(headers)
        span = self.tracer.start_span(
            f"process {type_name}",
            context=parent,
            kind=SpanKind.CONSUMER if isinstance(message, Event) else SpanKind.INTERNAL,
        )
        if span.is_recording():  # what a sampled-out or no-op span would throw away
            span.set_attributes(_attributes(envelope, type_name))
        token = attach(trace.set_span_in_context(span, parent))
        return _Dispatching(span, token, type_name, time.perf_counter())

    def end(self, dispatching: _Dispatching, error: BaseException | None = None) -> None:
        """End what `begin` started; `error` is what the handlers raised, if anything."""
        detach(dispatching.token)
        span = dispatching.span
        measured: dict[str, AttributeValue] = {"tidings.message.type": dispatching.type_name}
        if error is not None:
            measured["error.type"] = type(error).__name__
            if span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        self.instruments.duration.record(time.perf_counter() - dispatching.started, measured)

    @contextmanager
    def publishing(self) -> Iterator[Publishing]:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "append",
        }
        with self.tracer.start_as_current_span(
            "send", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            commit = _Commit(span, self.instruments)
            try:
                yield commit
            except ConcurrencyError as exc:
                self.instruments.conflicts.add(
                    1, {"messaging.destination.name": commit.category or ""}
                )
                span.set_attribute("error.type", type(exc).__name__)
                raise

    def reading(
        self, system: str, operation: str, collection: str
    ) -> AbstractContextManager[Reading]:
        return reads.reading(self.tracer, system, operation, collection)

    def loading(self, aggregate: str, stream: str) -> AbstractContextManager[Loading]:
        return reads.loading(self.tracer, aggregate, stream)

    def relaying(
        self, publisher: object, message: BrokerMessage
    ) -> AbstractContextManager[BrokerMessage]:
        return brokers.relaying(self.tracer, publisher, message)

    def receiving(
        self, receiver: object, group: str, envelope: Envelope[Event]
    ) -> AbstractContextManager[object]:
        return brokers.receiving(self.tracer, receiver, group, envelope)

    @contextmanager
    def processing_batch(self, projection: str, records: Sequence[RecordedEvent]) -> Iterator[Span]:
        links: list[Link] = []
        for record in records:
            if record.headers and b"traceparent" in record.headers and len(links) < MAX_LINKS:
                context = propagate.extract(json.loads(record.headers))
                span_context = trace.get_current_span(context).get_span_context()
                if span_context.is_valid:
                    links.append(Link(span_context))
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "project",
            "messaging.consumer.group.name": projection,
            "messaging.destination.name": projection,
            "messaging.batch.message_count": len(records),
            "tidings.projection": projection,
        }
        if records:
            attributes["tidings.position"] = records[-1].position
        started = time.perf_counter()
        try:
            with self.tracer.start_as_current_span(
                f"process {projection}", kind=SpanKind.CONSUMER, attributes=attributes, links=links
            ) as span:
                yield span
        finally:
            self.instruments.duration.record(
                time.perf_counter() - started, {"tidings.handler": projection}
            )

    @contextmanager
    def saga_step(self, saga: str, step: str, stream: str) -> Iterator[Span]:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "tidings.saga": saga,
            "tidings.step": step,
            "tidings.stream": stream,
        }
        started = time.perf_counter()
        error: str | None = None
        try:
            with self.tracer.start_as_current_span(
                f"step {saga}.{step}", kind=SpanKind.INTERNAL, attributes=attributes
            ) as span:
                yield span
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            measured: dict[str, AttributeValue] = {"tidings.handler": f"{saga}.{step}"}
            if error is not None:
                measured["error.type"] = error
            self.instruments.duration.record(time.perf_counter() - started, measured)

    def retried(self, handler: str, attempt: int, error: BaseException) -> None:
        self.instruments.retries.add(
            1, {"tidings.handler": handler, "error.type": type(error).__name__}
        )
        trace.get_current_span().add_event(
            "retry",
            {"tidings.handler": handler, "tidings.attempt": attempt, "error.type": _name(error)},
        )

    def dead_lettered(self, handler: str, error: BaseException, parked: bool) -> None:
        self.instruments.dead_letters.add(
            1, {"tidings.handler": handler, "error.type": _name(error), "tidings.parked": parked}
        )
        span = trace.get_current_span()
        span.record_exception(error, {"tidings.handler": handler})
        span.set_status(Status(StatusCode.ERROR, f"{handler}: {_name(error)}"))


class _Dispatching:
    """A message's span under way, from `Telemetry.begin` to `Telemetry.end`."""

    __slots__ = ("span", "started", "token", "type_name")

    def __init__(self, span: Span, token: Token[Context], type_name: str, started: float) -> None:
        self.span = span
        self.token = token
        self.type_name = type_name
        self.started = started


def _attributes(envelope: Envelope[Message], type_name: str) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "handle",
        "messaging.message.id": str(envelope.message_id),
        "messaging.message.conversation_id": str(envelope.correlation_id),
        "messaging.destination.name": envelope.stream or type_name,
        "tidings.message.type": type_name,
        "tidings.message.kind": _kind(envelope.message),
    }
    if envelope.causation_id is not None:
        attributes["tidings.causation_id"] = str(envelope.causation_id)
    if envelope.position is not None:
        attributes["tidings.position"] = envelope.position
    return attributes


class _Commit:
    """One unit of work commit under its span."""

    __slots__ = ("_headers", "category", "count", "instruments", "span")

    def __init__(self, span: Span, instruments: Instruments) -> None:
        self.span = span
        self.instruments = instruments
        self.category: str | None = None
        self.count = 0
        self._headers: dict[str, str] | None = None

    def headers(self) -> dict[str, str]:
        if self._headers is None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the current span: this commit's
            self._headers = carrier
        return dict(self._headers)

    def appended(self, stream: str, count: int) -> None:
        category = category_of(stream)
        if self.category is None:
            self.category = category
            self.span.update_name(f"send {stream}")
            self.span.set_attribute("messaging.destination.name", stream)
        self.count += count
        self.span.set_attribute("messaging.batch.message_count", self.count)
        self.instruments.appends.add(count, {"messaging.destination.name": category})


class AsyncObserveMessages:
    """Bus middleware: a span and a duration for each message (added by `instrument`)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def __call__(
        self,
        envelope: Envelope[Message],
        call_next: Callable[[Envelope[Message]], Awaitable[Any]],
    ) -> Any:
        telemetry = self.telemetry
        dispatching = telemetry.begin(envelope)
        try:
            result = await call_next(envelope)
        except BaseException as exc:
            telemetry.end(dispatching, exc)
            raise
        telemetry.end(dispatching)
        return result


class ObserveMessages:
    """Blocking bus middleware: a span and a duration for each message (added by `instrument`)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def __call__(
        self, envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]
    ) -> Any:
        telemetry = self.telemetry
        dispatching = telemetry.begin(envelope)
        try:
            result = call_next(envelope)
        except BaseException as exc:
            telemetry.end(dispatching, exc)
            raise
        telemetry.end(dispatching)
        return result


def _kind(message: Message) -> str:
    if isinstance(message, Event):
        return "event"
    return "command" if isinstance(message, Command) else "query"


def _name(error: BaseException) -> str:
    return type(error).__name__
