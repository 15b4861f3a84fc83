"""What a broker binding does: publish a message and confirm it, hand deliveries out to ack.

A binding carries encoded events (`BrokerMessage`: bytes and string headers)
to a subject derived from the event's category and type, under one
namespace (a NATS stream, a RabbitMQ exchange). Delivery is at least once:
`publish` returns only once the broker has kept the message, and a
delivery that is not acked is delivered again, to this receiver or another
of its group. The bindings of each broker live in modules of their own,
each importable only with its extra installed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from tidings.errors import InvalidValue

__all__ = [
    "AsyncBinding",
    "AsyncDelivery",
    "AsyncPublisher",
    "AsyncReceiver",
    "BrokerMessage",
    "subject_for",
]


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """An encoded event as a broker carries it.

    `subject` is relative to the binding's namespace (`<category>.<type>`);
    `headers` hold the envelope (see `tidings.transports.envelopes`).
    """

    subject: str
    body: bytes
    headers: Mapping[str, str]

    @property
    def message_id(self) -> str:
        return self.headers.get("tidings-message-id", "")

    @property
    def type_name(self) -> str:
        """The event's type name (`tidings-type`), as its class registers it; "" if none."""
        return self.headers.get("tidings-type", "")


class AsyncDelivery(Protocol):
    """One message received, to be acked once handled or nacked to be delivered again."""

    @property
    def message(self) -> BrokerMessage: ...

    @property
    def redelivered(self) -> bool:
        """Whether the broker delivered this message before (it was not acked then)."""
        ...

    async def ack(self) -> None:
        """Done with it: the broker will not deliver it again."""
        ...

    async def nack(self) -> None:
        """Not done: the broker delivers it again, soon."""
        ...


class AsyncReceiver(Protocol):
    """A durable consumer group: its deliveries survive restarts until acked."""

    async def fetch(self, limit: int, wait: float) -> list[AsyncDelivery]:
        """Up to `limit` deliveries, waiting up to `wait` seconds for the first; [] if none."""
        ...

    async def delete(self) -> None:
        """Remove the group from the broker, with what it has not acked."""
        ...

    async def aclose(self) -> None:
        """Stop receiving; what was received and not acked is delivered again."""
        ...


class AsyncPublisher(Protocol):
    """What the relay needs of a broker: to send a message and know it was taken.

    Every binding is one; so is an adapter that speaks another service's
    wire format, which publishes only.
    """

    async def publish(self, message: BrokerMessage) -> None:
        """Send `message`; returns once the broker confirms it kept it, raises otherwise."""
        ...

    async def aclose(self) -> None: ...


class AsyncBinding(AsyncPublisher, Protocol):
    """A connection to one broker namespace, to publish into and receive from."""

    @property
    def namespace(self) -> str: ...

    async def receiver(
        self, group: str, *, categories: Collection[str] | None = None
    ) -> AsyncReceiver:
        """The durable consumer group `group`, created if missing, of these categories or all."""
        ...

    async def delete(self) -> None:
        """Remove the namespace from the broker (stream or exchange), with its messages."""
        ...


_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def subject_for(category: str, type_name: str) -> str:
    """The subject of an event: `<category>.<type>`, safe for NATS subjects and AMQP keys.

    A category is one token (characters other than letters, digits, `_`
    and `-` become `_`), so `<category>.>` or `<category>.#` selects
    exactly its events; dots in a type name stay, as subject levels.
    """
    return ".".join([category_token(category), *map(category_token, type_name.split("."))])


def category_token(category: str) -> str:
    """A category as `subject_for` writes it: the first level of its events' subjects."""
    return _UNSAFE_TOKEN.sub("_", category) or "_"


def check_name(what: str, name: str) -> None:
    """Refuse a namespace or group name that is not safe as a stream, exchange or queue name."""
    if not _NAME.fullmatch(name):
        raise InvalidValue(f"a {what} is made of letters, digits, '_' and '-', not {name!r}")
