"""Spans of the outbox relay and the consumer, per message, by the messaging semantic conventions.

- Each message the relay publishes is a span `publish <subject>` (kind
  PRODUCER), a child of the span that appended the event (the trace context
  stored in its headers), linked to the relay's batch. The message goes out
  with this span's trace context in place of the stored one.
- Each message a consumer hands to its bus is a span `process <subject>`
  (kind CONSUMER), a child of the span that published it; the bus's span of
  the message, and whatever its handlers do, are its children.

Both have `messaging.system` (`nats`, `rabbitmq`, `redis`; what another
publisher names in its `messaging_system` attribute, else its class's name
in lower case), `messaging.destination.name` (the
subject, `<category>.<type>`, relative to the binding's namespace),
`messaging.message.id` (the event's id) and
`messaging.message.conversation_id`; the consumer's adds
`messaging.consumer.group.name`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable
from uuid import UUID

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from tidings.messages import Envelope, Event
from tidings.store.records import category_of
from tidings.transports.binding import BrokerMessage, subject_for
from tidings.transports.envelopes import CORRELATION_ID, HEADERS

__all__ = ["NamesItsSystem", "received", "receiving", "relaying"]

# The brokers of tidings' own bindings, by the module that holds them.
_SYSTEMS = {
    "tidings.transports.nats": "nats",
    "tidings.transports.rabbitmq": "rabbitmq",
    "tidings.transports.redis": "redis",
    "tidings.transports.redis_pubsub": "redis",
}

received: ContextVar[UUID | None] = ContextVar("tidings_received", default=None)
"""The id of the message whose consumer span is current: the bus's span of it is its child."""

_encode = msgspec.json.Encoder().encode
_headers = msgspec.json.Decoder(dict[str, str]).decode


@runtime_checkable
class NamesItsSystem(Protocol):
    """A publisher or receiver of an application's own that says which broker it speaks to."""

    messaging_system: str


def system_of(endpoint: object) -> str:
    """The `messaging.system` of a publisher or receiver."""
    cls = type(endpoint)
    known = _SYSTEMS.get(cls.__module__)
    if known is not None:
        return known
    if isinstance(endpoint, NamesItsSystem):
        return endpoint.messaging_system
    return cls.__name__.lower()


@contextmanager
def relaying(tracer: Tracer, publisher: object, message: BrokerMessage) -> Iterator[BrokerMessage]:
    stored = _headers(message.headers[HEADERS]) if HEADERS in message.headers else {}
    links: list[Link] = []
    parent: Context | None = None
    if "traceparent" in stored:
        parent = propagate.extract(stored)
        batch = trace.get_current_span().get_span_context()
        if batch.is_valid:
            links.append(Link(batch))
    attributes = _attributes(system_of(publisher), "send", message.subject, message.message_id)
    attributes["messaging.operation.name"] = "publish"
    if CORRELATION_ID in message.headers:
        attributes["messaging.message.conversation_id"] = message.headers[CORRELATION_ID]
    with tracer.start_as_current_span(
        f"publish {message.subject}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        links=links,
    ):
        carried = {k: v for k, v in stored.items() if k not in ("traceparent", "tracestate")}
        propagate.inject(carried)  # the current span: this publication's
        yield BrokerMessage(
            message.subject, message.body, {**message.headers, HEADERS: _encode(carried).decode()}
        )


@contextmanager
def receiving(
    tracer: Tracer, receiver: object, group: str, envelope: Envelope[Event]
) -> Iterator[Span]:
    headers = envelope.headers
    parent = propagate.extract(headers) if headers and "traceparent" in headers else None
    subject = subject_for(category_of(envelope.stream or ""), type(envelope.message).__event_type__)
    attributes = _attributes(system_of(receiver), "process", subject, str(envelope.message_id))
    attributes["messaging.operation.name"] = "process"
    attributes["messaging.consumer.group.name"] = group
    attributes["messaging.message.conversation_id"] = str(envelope.correlation_id)
    token = received.set(envelope.message_id)
    try:
        with tracer.start_as_current_span(
            f"process {subject}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield span
    finally:
        received.reset(token)


def _attributes(
    system: str, operation: str, destination: str, message_id: str
) -> dict[str, AttributeValue]:
    return {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        "messaging.message.id": message_id,
    }
