"""Messages and the envelope that carries their metadata.

Domain messages are plain frozen dataclasses that subclass `Command`, `Event`
or `Query`. Everything about delivery (ids, time, position in the log) lives
in the `Envelope`, so domain classes stay free of storage fields.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID, SafeUUID

import msgspec
import msgspec.structs

__all__ = [
    "Command",
    "Envelope",
    "Event",
    "Message",
    "Query",
    "new_id",
]


class Message:
    """Base of every message the bus carries."""

    __slots__ = ()


class Command(Message):
    """A request to change the system: one handler, whose result or error reaches the caller."""

    __slots__ = ()


class Query(Message):
    """A request for information. Exactly one handler; it changes nothing."""

    __slots__ = ()


class Event(Message):
    """A fact that already happened. Zero or more handlers; their failures never fail the sender.

    Stored events are identified by a stable type name, by default the class name.
    Subclass keywords set it and the schema version used for upcasting::

        @dataclass(frozen=True)
        class Allocated(Event, type_name="allocation.Allocated", version=2): ...
    """

    __slots__ = ()
    __event_type__: ClassVar[str] = "Event"
    __event_version__: ClassVar[int] = 1

    def __init_subclass__(
        cls, *, type_name: str | None = None, version: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        # dataclass(slots=True) rebuilds the class from its __dict__, without these keywords.
        own = cls.__dict__
        cls.__event_type__ = type_name or own.get("__event_type__") or cls.__name__
        if version is not None and version < 1:
            raise ValueError(f"{cls.__name__}: schema version must be >= 1, got {version}")
        cls.__event_version__ = version or own.get("__event_version__") or 1
        defined = _defined_events.setdefault(cls.__event_type__, {})
        defined[f"{cls.__module__}.{cls.__qualname__}"] = cls


_defined_events: dict[str, dict[str, type[Event]]] = {}


def event_classes_named(type_name: str) -> list[type[Event]]:
    """The loaded event classes stored under `type_name` (one, unless names clash)."""
    return list(_defined_events.get(type_name, {}).values())


def new_id() -> UUID:
    """A time-ordered UUID (version 7), so ids sort by creation and index well.

    Within one millisecond a 12-bit counter keeps a process's ids in order
    (RFC 9562, method 1). The random bits come from a generator of tidings'
    own, seeded from `os.urandom` and again in a forked child, so an
    application that calls `random.seed()` does not repeat ids across
    processes: ids must be unique, not unguessable, and this is several times
    faster than `os.urandom` on the bus's hot path.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms, _counter = ms, _getrandbits(11)
    else:  # the same millisecond, or the clock stepped back: count on from the last id
        _counter += 1
        if _counter > 0xFFF:
            _last_ms, _counter = _last_ms + 1, 0
    uuid = object.__new__(UUID)
    object.__setattr__(
        uuid,
        "int",
        (_last_ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | _counter << 64
        | 0b10 << 62
        | _getrandbits(62),
    )
    object.__setattr__(uuid, "is_safe", _UNKNOWN_SAFETY)
    return uuid


_random = random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_random.seed)
_getrandbits = _random.getrandbits
_UNKNOWN_SAFETY = SafeUUID.unknown
_last_ms = 0
_counter = 0


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_from_ns(ns: int) -> datetime:
    """The UTC time `ns` nanoseconds after the epoch (from `time.time_ns()`), to the microsecond.

    Exact: whole microseconds of this era are well within a float's precision,
    and `fromtimestamp` rounds to the nearest microsecond.
    """
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC)


M = TypeVar("M", bound=Message, covariant=True)
N = TypeVar("N", bound=Message)


class Envelope(msgspec.Struct, Generic[M], frozen=True, gc=False):
    """A message with its metadata.

    `correlation_id` names the whole conversation (the id of the request that
    began it), `causation_id` the message that directly caused this one.
    `stream`, `version` and `position` are set once an event is stored.

    A frozen msgspec struct rather than a dataclass: one is made for every
    message the bus handles, and a struct is built several times faster. It
    holds no reference cycles, so the garbage collector need not track it.
    """

    message: M
    message_id: UUID
    correlation_id: UUID
    causation_id: UUID | None
    occurred_at: datetime
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    stream: str | None = None
    version: int | None = None
    position: int | None = None

    @staticmethod
    def new(
        message: N,
        *,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        headers: dict[str, str] | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope[N]:
        """Wrap `message`; without a correlation id it starts a conversation of its own.

        `occurred_at` defaults to now.
        """
        if not isinstance(message, Message):
            raise TypeError(
                f"expected a Command, Event or Query, got {type(message).__name__}: {message!r}"
            )
        message_id = new_id()
        return Envelope(
            message,
            message_id,
            correlation_id or message_id,
            causation_id,
            occurred_at or utc_now(),
            headers or {},
        )

    def caused(self, message: N) -> Envelope[N]:
        """An envelope for `message`, caused by this one, in the same conversation."""
        return Envelope.new(
            message, correlation_id=self.correlation_id, causation_id=self.message_id
        )

    def stored(self, stream: str, version: int, position: int) -> Envelope[M]:
        """This envelope as recorded in the log."""
        return msgspec.structs.replace(self, stream=stream, version=version, position=position)
