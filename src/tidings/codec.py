"""Turning events into stored bytes and back: type registry, msgspec codec, upcasters.

Events are stored under a stable type name and schema version (see `Event`),
never under an import path, so classes can move and be renamed freely. An
upcaster turns the stored shape of an old schema version into the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tidings.errors import EventDecodeError, InvalidType, UnknownEventType
from tidings.messages import Envelope, Event, event_classes_named
from tidings.store.records import NewEvent, RecordedEvent

__all__ = ["Codec", "Upcaster"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_json_encoder = msgspec.json.Encoder(decimal_format="string")
_headers_decoder = msgspec.json.Decoder(dict[str, str])


class Codec:
    """Encodes registered event types with msgspec and decodes them by type name.

    Types are registered explicitly with `register`, or found among the loaded
    subclasses of `Event` the first time an unknown name is decoded.
    """

    def __init__(self, *types: type[Event]) -> None:
        self._types: dict[str, type[Event]] = {}
        self._decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self.register(*types)

    def register(self, *types: type[Event]) -> None:
        """Make `types` decodable by their type names; two classes may not share a name."""
        for cls in types:
            if not (isinstance(cls, type) and issubclass(cls, Event)) or cls is Event:
                raise TypeError(f"{cls!r} is not a subclass of Event")
            name = cls.__event_type__
            known = self._types.get(name)
            if known is not None and known is not cls and not _same_definition(known, cls):
                raise TypeError(
                    f"event type name {name!r} is used by both {_qualified(known)} and "
                    f"{_qualified(cls)}; give one of them type_name=..."
                )
            self._types[name] = cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning `type_name`'s stored data of `from_version` into the next."""

        def register(fn: Upcaster) -> Upcaster:
            key = (type_name, from_version)
            if key in self._upcasters:
                raise ValueError(f"an upcaster for {type_name} v{from_version} already exists")
            self._upcasters[key] = fn
            return fn

        return register

    def resolve(self, type_name: str) -> type[Event]:
        """The class stored under `type_name`."""
        cls = self._types.get(type_name)
        if cls is None:
            self._discover(type_name)
            cls = self._types.get(type_name)
            if cls is None:
                raise UnknownEventType(type_name)
        return cls

    def encode(self, event: Event) -> bytes:
        if not isinstance(event, Event):
            raise InvalidType(f"only events are stored, not {type(event).__name__}: {event!r}")
        cls = type(event)
        if self._types.get(cls.__event_type__) is not cls:
            self.register(cls)
        return _json_encoder.encode(event)

    def decode(self, type_name: str, schema_version: int, data: bytes) -> Event:
        cls = self.resolve(type_name)
        try:
            if schema_version == cls.__event_version__:
                event: Event = self._decoder(cls).decode(data)
                return event
            return self._upcast(cls, type_name, schema_version, data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise EventDecodeError(type_name, schema_version, str(exc)) from exc

    def new_event(self, envelope: Envelope[Event]) -> NewEvent:
        """The storable form of an event envelope; `InvalidType` for anything but an event's."""
        if not isinstance(envelope, Envelope):
            raise InvalidType(f"expected the Envelope of an event, got {type(envelope).__name__}")
        event = envelope.message
        data = self.encode(event)  # refuses what is not an event before its type is read
        return NewEvent(
            event_id=envelope.message_id,
            type=type(event).__event_type__,
            schema_version=type(event).__event_version__,
            data=data,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            occurred_at=envelope.occurred_at,
            headers=_json_encoder.encode(envelope.headers) if envelope.headers else b"",
        )

    def envelope(self, record: RecordedEvent) -> Envelope[Event]:
        """The typed envelope of a stored event."""
        try:
            event = self.decode(record.type, record.schema_version, record.data)
        except EventDecodeError as exc:
            exc.locate(record.stream, record.version, record.position)
            raise
        return Envelope(
            event,
            record.event_id,
            record.correlation_id,
            record.causation_id,
            record.occurred_at,
            _headers_decoder.decode(record.headers) if record.headers else {},
            record.stream,
            record.version,
            record.position,
        )

    def _decoder(self, cls: type[Event]) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(cls)
        if decoder is None:
            decoder = self._decoders[cls] = msgspec.json.Decoder(cls)
        return decoder

    def _upcast(self, cls: type[Event], type_name: str, version: int, data: bytes) -> Event:
        current = cls.__event_version__
        if version > current:
            raise EventDecodeError(
                type_name,
                version,
                f"stored schema v{version} is newer than {cls.__name__} v{current}",
            )
        shape: dict[str, Any] = msgspec.json.decode(data)
        while version < current:
            upcast = self._upcasters.get((type_name, version))
            if upcast is None:
                raise EventDecodeError(
                    type_name, version, f"no upcaster from v{version} to v{version + 1}"
                )
            shape = upcast(shape)
            version += 1
        return msgspec.convert(shape, cls, strict=False)

    def _discover(self, type_name: str) -> None:
        candidates = event_classes_named(type_name)
        if len(candidates) > 1:
            names = ", ".join(sorted(_qualified(c) for c in candidates))
            raise TypeError(f"event type name {type_name!r} is used by {names}; register one")
        self.register(*candidates)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(a: type, b: type) -> bool:
    return _qualified(a) == _qualified(b)
