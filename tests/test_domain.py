from dataclasses import dataclass

import pytest

from tidings import (
    Aggregate,
    ConfigurationError,
    DomainError,
    Event,
    EventSourced,
    Saga,
    Step,
    StepContext,
    applies,
)


@dataclass(frozen=True)
class Registered(Event, type_name="domain.Registered"):
    name: str


@dataclass(frozen=True)
class Renamed(Event, type_name="domain.Renamed"):
    name: str


@dataclass(frozen=True)
class Closed(Event, type_name="domain.Closed"):
    pass


class AlreadyClosed(DomainError):
    pass


class Member(EventSourced):
    category = "member"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.open = False

    @classmethod
    def register(cls, id: str, name: str) -> "Member":
        member = cls(id)
        member.record(Registered(name))
        return member

    def rename(self, name: str) -> None:
        if not self.open:
            raise AlreadyClosed(f"member {self.id} is closed")
        self.record(Renamed(name))

    def close(self) -> None:
        if not self.open:
            raise AlreadyClosed(f"member {self.id} is closed")
        self.record(Closed())

    @applies
    def _registered(self, event: Registered) -> None:
        self.name = event.name
        self.open = True

    @applies
    def _renamed(self, event: Renamed) -> None:
        self.name = event.name

    @applies
    def _closed(self, event: Closed) -> None:
        self.open = False


def test_recording_applies_the_event_at_once() -> None:
    member = Member.register("m1", "Ann")
    member.rename("Anna")
    assert member.name == "Anna"
    assert member.version == 2
    assert member.committed_version == 0
    assert member.pending_events == (Registered("Ann"), Renamed("Anna"))


def test_rebuilding_from_history_gives_the_same_state_and_no_pending_events() -> None:
    member = Member.rebuild("m1", [Registered("Ann"), Renamed("Anna"), Closed()])
    assert (member.name, member.open, member.version) == ("Anna", False, 3)
    assert member.pending_events == ()
    assert member.committed_version == 3


def test_an_invalid_transition_raises_the_domain_error_and_records_nothing() -> None:
    member = Member.rebuild("m1", [Registered("Ann"), Closed()])
    with pytest.raises(AlreadyClosed, match="m1 is closed"):
        member.rename("Bo")
    assert member.pending_events == ()
    assert member.version == 2


def test_collecting_takes_the_pending_events_once() -> None:
    member = Member.register("m1", "Ann")
    assert member.collect_events() == [Registered("Ann")]
    assert member.collect_events() == []
    assert member.committed_version == member.version == 1


def test_stream_names_use_the_category_and_id() -> None:
    assert Member.register("m1", "Ann").stream == "member-m1"
    assert Member.stream_for("m2") == "member-m2"


def test_an_event_without_an_applier_is_an_error_naming_both() -> None:
    @dataclass(frozen=True)
    class Unknown(Event, type_name="domain.Unknown"):
        pass

    with pytest.raises(TypeError, match="Member has no @applies method for Unknown"):
        Member("m1").record(Unknown())


def test_appliers_are_inherited_and_can_be_overridden() -> None:
    class Vip(Member):
        @applies
        def _renamed(self, event: Renamed) -> None:
            self.name = event.name.upper()

    vip = Vip.rebuild("v1", [Registered("Ann"), Renamed("anna")])
    assert vip.name == "ANNA"
    assert vip.category == "Vip"


def test_an_applies_method_must_name_its_event_type() -> None:
    with pytest.raises(TypeError, match="takes \\(self, event: SomeEvent\\)"):

        class Broken(EventSourced):
            @applies
            def _anything(self, event: object) -> None: ...


class Basket(Aggregate):
    def __init__(self, basket_id: str) -> None:
        self.id = basket_id
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self.items.append(item)
        self.record(Renamed(item))


def test_state_stored_aggregates_collect_events_without_calling_super_init() -> None:
    basket = Basket("b1")
    basket.add("lamp")
    assert basket.stream == "Basket-b1"
    assert basket.collect_events() == [Renamed("lamp")]
    assert basket.pending_events == ()


def test_only_events_can_be_recorded() -> None:
    with pytest.raises(TypeError, match="record events"):
        Basket("b1").record("lamp")  # type: ignore[arg-type]


def test_a_saga_named_like_an_aggregate_category_is_refused_at_definition() -> None:
    class Voyage(EventSourced):
        pass

    def book(context: StepContext) -> None: ...

    with pytest.raises(ConfigurationError, match=r"'Voyage', which aggregate .*Voyage"):
        Saga("Voyage", [Step("book", book)])
    Saga("Voyages", [Step("book", book)])  # a category of its own is fine
