import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from tidings import (
    Codec,
    Command,
    Envelope,
    Event,
    EventDecodeError,
    InvalidType,
    TidingsError,
    UnknownEventType,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int


@dataclass(frozen=True)
class Everything(Event, type_name="codec.Everything"):
    text: str
    number: int
    ratio: float
    flag: bool
    amount: Decimal
    day: date
    moment: datetime
    ident: UUID
    colour: Colour
    tags: list[str]
    counts: dict[str, int]
    lines: list[Line]
    main_line: Line
    note: str | None = None
    extra: tuple[int, ...] = field(default_factory=tuple)


def sample() -> Everything:
    return Everything(
        text='ünïcödé "quoted"',
        number=-(2**53) - 1,
        ratio=0.1,
        flag=True,
        amount=Decimal("1234.5600"),
        day=date(2026, 2, 28),
        moment=datetime(2026, 11, 22, 7, 38, 5, 123456, tzinfo=timezone(timedelta(hours=3))),
        ident=uuid4(),
        colour=Colour.BLUE,
        tags=["a", "b"],
        counts={"x": 1},
        lines=[Line("LAMP", 2), Line("SOFA", 1)],
        main_line=Line("LAMP", 2),
        extra=(1, 2, 3),
    )


def test_every_supported_type_round_trips_exactly() -> None:
    codec = Codec()
    event = sample()
    decoded = codec.decode("codec.Everything", 1, codec.encode(event))
    assert decoded == event
    assert isinstance(decoded, Everything)
    assert decoded.amount.as_tuple() == event.amount.as_tuple()  # trailing zeros kept
    assert decoded.moment.utcoffset() == timedelta(hours=3)


def test_optional_field_round_trips_when_set() -> None:
    codec = Codec()
    event = sample()
    with_note = Everything(**{**event.__dict__, "note": "hello"})
    assert codec.decode("codec.Everything", 1, codec.encode(with_note)) == with_note


def test_unknown_type_name_is_a_clear_error_naming_it() -> None:
    with pytest.raises(UnknownEventType, match=r"'nobody\.Defined'"):
        Codec().decode("nobody.Defined", 1, b"{}")


def test_type_names_resolve_without_registration() -> None:
    assert Codec().resolve("codec.Everything") is Everything


def test_two_classes_may_not_share_a_type_name() -> None:
    @dataclass(frozen=True)
    class Twin(Event, type_name="codec.Twin"):
        a: int

    def other() -> type[Event]:
        @dataclass(frozen=True)
        class Twin(Event, type_name="codec.Twin"):
            b: int

        return Twin

    codec = Codec(Twin)
    with pytest.raises(TypeError, match=r"codec\.Twin"):
        codec.register(other())


def test_data_that_does_not_fit_the_class_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match=r"codec\.Everything"):
        Codec().decode("codec.Everything", 1, b'{"text": 1}')


def test_envelope_round_trips_through_the_stored_form() -> None:
    from tidings.store.records import RecordedEvent

    codec = Codec()
    envelope = Envelope.new(sample(), headers={"tenant": "t1"})
    new = codec.new_event(envelope)
    record = RecordedEvent(
        position=7,
        stream="Everything-1",
        version=3,
        event_id=new.event_id,
        type=new.type,
        schema_version=new.schema_version,
        data=new.data,
        correlation_id=new.correlation_id,
        causation_id=new.causation_id,
        occurred_at=new.occurred_at,
        headers=new.headers,
    )
    back = codec.envelope(record)
    assert back.message == envelope.message
    assert back.message_id == envelope.message_id
    assert back.correlation_id == envelope.correlation_id
    assert back.headers == {"tenant": "t1"}
    assert (back.stream, back.version, back.position) == ("Everything-1", 3, 7)


@dataclass(frozen=True)
class Renamed(Event, type_name="codec.Renamed", version=3):
    full_name: str
    email: str


def test_upcasters_lift_old_shapes_step_by_step() -> None:
    codec = Codec()

    @codec.upcaster("codec.Renamed", from_version=1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        return {"full_name": data.pop("name"), **data}

    @codec.upcaster("codec.Renamed", from_version=2)
    def add_email(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "email": "unknown@example.com"}

    assert codec.decode("codec.Renamed", 1, b'{"name": "Ann"}') == Renamed(
        "Ann", "unknown@example.com"
    )
    assert codec.decode("codec.Renamed", 2, b'{"full_name": "Bo"}') == Renamed(
        "Bo", "unknown@example.com"
    )


def test_a_missing_upcaster_names_the_gap() -> None:
    with pytest.raises(EventDecodeError, match=r"no upcaster from v1 to v2"):
        Codec().decode("codec.Renamed", 1, b'{"name": "Ann"}')


def test_a_stored_version_newer_than_the_class_is_refused() -> None:
    with pytest.raises(EventDecodeError, match="newer"):
        Codec().decode("codec.Renamed", 4, b"{}")


def test_only_events_are_encoded() -> None:
    with pytest.raises(InvalidType, match="only events"):
        Codec().encode("text")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Shout(Command):
    text: str


def test_only_the_envelopes_of_events_become_new_events() -> None:
    with pytest.raises(InvalidType, match="only events are stored, not Shout") as raised:
        Codec().new_event(Envelope.new(Shout("hi")))  # type: ignore[arg-type]
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, TidingsError)
    with pytest.raises(InvalidType, match="Envelope"):
        Codec().new_event(Shout("hi"))  # type: ignore[arg-type]


def test_decoded_datetimes_keep_utc() -> None:
    @dataclass(frozen=True)
    class Stamped(Event, type_name="codec.Stamped"):
        at: datetime

    codec = Codec(Stamped)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert codec.decode("codec.Stamped", 1, codec.encode(Stamped(moment))) == Stamped(moment)
