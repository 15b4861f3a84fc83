from dataclasses import dataclass
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest

from tidings import (
    Aggregate,
    Command,
    DomainError,
    Envelope,
    Event,
    EventSourced,
    MemoryStore,
    MessageBus,
    Router,
    UnitOfWork,
    applies,
)
from tidings.testing import AggregateScenario, BusScenario, Call, Recorder, like

NOON = datetime(2030, 1, 1, 12, tzinfo=UTC)


class LampBroken(DomainError):
    pass


@dataclass(frozen=True)
class Installed(Event, type_name="testing.Installed"):
    lamp_id: str
    watts: int


@dataclass(frozen=True)
class SwitchedOn(Event, type_name="testing.SwitchedOn"):
    lamp_id: str
    at: datetime


@dataclass(frozen=True)
class Burnt(Event, type_name="testing.Burnt"):
    lamp_id: str


class Lamp(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.watts = 0
        self.on = False
        self.burnt = False

    @classmethod
    def install(cls, lamp_id: str, watts: int) -> "Lamp":
        lamp = cls(lamp_id)
        lamp.record(Installed(lamp_id, watts))
        return lamp

    def switch_on(self, at: datetime) -> str:
        if self.burnt:
            raise LampBroken(f"lamp {self.id} is burnt out")
        if self.on:
            return "already on"
        self.record(SwitchedOn(self.id, at))
        if self.watts > 100:
            self.record(Burnt(self.id))
        return "switched on"

    @applies
    def _installed(self, event: Installed) -> None:
        self.watts = event.watts

    @applies
    def _switched_on(self, event: SwitchedOn) -> None:
        self.on = True

    @applies
    def _burnt(self, event: Burnt) -> None:
        self.burnt = True


class Shelf(Aggregate):
    """A state-stored aggregate."""

    def __init__(self, shelf_id: str, watts: int) -> None:
        self.id = shelf_id
        self.watts = watts

    def add_lamp(self, lamp_id: str) -> None:
        self.record(Installed(lamp_id, self.watts))


# AggregateScenario


def test_given_events_when_an_action_then_its_events() -> None:
    outcome = (
        AggregateScenario(Lamp, "l1")
        .given(Installed("l1", 60))
        .when(Lamp.switch_on, NOON)
        .then(SwitchedOn("l1", NOON))
    )
    assert outcome.result == "switched on"
    assert outcome.aggregate.on is True
    assert outcome.events == (SwitchedOn("l1", NOON),)


def test_a_lambda_receives_the_aggregate_rebuilt_from_the_given_events() -> None:
    outcome = (
        AggregateScenario(Lamp, "l1")
        .given(Installed("l1", 150))
        .when(lambda lamp: lamp.switch_on(NOON))
        .then(SwitchedOn("l1", NOON), Burnt("l1"))
    )
    assert outcome.aggregate.version == 3
    assert outcome.aggregate.id == "l1"


def test_without_given_the_action_is_a_factory_and_all_its_events_are_new() -> None:
    outcome = AggregateScenario(Lamp).when(Lamp.install, "l1", watts=40).then(Installed("l1", 40))
    assert isinstance(outcome.aggregate, Lamp)
    assert outcome.aggregate.watts == 40


def test_then_with_no_events_asserts_that_nothing_was_recorded() -> None:
    (
        AggregateScenario(Lamp, "l1")
        .given(Installed("l1", 60), SwitchedOn("l1", NOON))
        .when(Lamp.switch_on, NOON)
        .then()
    )
    with pytest.raises(AssertionError, match="expected no events:"):
        AggregateScenario(Lamp, "l1").given(Installed("l1", 60)).when(Lamp.switch_on, NOON).then()


def test_a_state_stored_aggregate_is_given_as_an_instance() -> None:
    shelf = Shelf("s1", 25)
    outcome = (
        AggregateScenario(Shelf).given(shelf).when(Shelf.add_lamp, "l9").then(Installed("l9", 25))
    )
    assert outcome.aggregate is shelf


def test_events_already_pending_on_a_given_instance_are_not_new() -> None:
    shelf = Shelf("s1", 25)
    shelf.add_lamp("l1")
    AggregateScenario(Shelf).given(shelf).when(Shelf.add_lamp, "l2").then(Installed("l2", 25))


def test_a_field_that_differs_is_named_with_both_values() -> None:
    scenario = AggregateScenario(Lamp).when(Lamp.install, "l1", 40)
    with pytest.raises(AssertionError) as raised:
        scenario.then(Installed("l1", 60))
    message = str(raised.value)
    assert "Lamp 'test': the new events are not those expected" in message
    assert "expected 1 event:\n  1. Installed(lamp_id='l1', watts=60)" in message
    assert "got 1 event:\n  1. Installed(lamp_id='l1', watts=40)" in message
    assert "differences:\n  1: watts: expected 60, got 40" in message


def test_missing_unexpected_and_wrong_type_events_are_each_reported() -> None:
    scenario = AggregateScenario(Lamp, "l1").given(Installed("l1", 150)).when(Lamp.switch_on, NOON)
    with pytest.raises(AssertionError, match=r"2: unexpected Burnt\(lamp_id='l1'\)"):
        scenario.then(SwitchedOn("l1", NOON))
    with pytest.raises(AssertionError, match=r"3: missing Burnt\(lamp_id='l2'\)"):
        scenario.then(SwitchedOn("l1", NOON), Burnt("l1"), Burnt("l2"))
    with pytest.raises(AssertionError, match="1: expected Burnt, got SwitchedOn"):
        scenario.then(Burnt("l1"), SwitchedOn("l1", NOON))


def test_mock_any_matches_a_timestamp() -> None:
    scenario = AggregateScenario(Lamp, "l1").given(Installed("l1", 60))
    scenario.when(Lamp.switch_on, datetime.now(UTC)).then(SwitchedOn("l1", ANY))
    with pytest.raises(AssertionError, match="lamp_id: expected 'l2', got 'l1'"):
        scenario.then(SwitchedOn("l2", ANY))


def test_like_matches_the_type_and_only_the_fields_named() -> None:
    scenario = AggregateScenario(Lamp, "l1").given(Installed("l1", 150)).when(Lamp.switch_on, NOON)
    scenario.then(like(SwitchedOn, lamp_id="l1"), like(Burnt))
    with pytest.raises(AssertionError) as raised:
        scenario.then(like(SwitchedOn, lamp_id="l2"), like(Installed))
    message = str(raised.value)
    assert "1. like(SwitchedOn, lamp_id='l2')" in message
    assert "1: lamp_id: expected 'l2', got 'l1'" in message
    assert "2: expected a Installed, got Burnt" in message


def test_like_takes_a_predicate() -> None:
    scenario = AggregateScenario(Lamp, "l1").given(Installed("l1", 60)).when(Lamp.switch_on, NOON)
    scenario.then(like(SwitchedOn, where=lambda e: e.at.tzinfo is UTC))

    def in_the_past(event: SwitchedOn) -> bool:
        return event.at < datetime(2000, 1, 1, tzinfo=UTC)

    with pytest.raises(AssertionError, match=r"1: where=.*in_the_past is false for it"):
        scenario.then(like(SwitchedOn, where=in_the_past))


def test_like_refuses_a_field_the_event_does_not_have() -> None:
    with pytest.raises(TypeError, match="SwitchedOn has no field 'when'"):
        like(SwitchedOn, when=NOON)
    with pytest.raises(TypeError, match="takes an Event class"):
        like(Lamp)  # type: ignore[type-var]


def test_then_raises_returns_the_error() -> None:
    error = (
        AggregateScenario(Lamp, "l1")
        .given(Installed("l1", 60), Burnt("l1"))
        .when(Lamp.switch_on, NOON)
        .then_raises(LampBroken, match="l1 is burnt out")
    )
    assert isinstance(error, LampBroken)


def test_then_raises_fails_when_nothing_or_something_else_is_raised() -> None:
    fine = AggregateScenario(Lamp, "l1").given(Installed("l1", 60)).when(Lamp.switch_on, NOON)
    with pytest.raises(AssertionError) as raised:
        fine.then_raises(LampBroken)
    assert "expected Lamp.switch_on to raise LampBroken, but it returned 'switched on'" in str(
        raised.value
    )
    assert "1. SwitchedOn(lamp_id='l1'" in str(raised.value)

    burnt = AggregateScenario(Lamp, "l1").given(Installed("l1", 60), Burnt("l1"))
    burnt.when(Lamp.switch_on, NOON)
    with pytest.raises(AssertionError, match="but it raised LampBroken: lamp l1 is burnt out"):
        burnt.then_raises(KeyError)
    with pytest.raises(AssertionError, match="does not match 'melted'"):
        burnt.then_raises(LampBroken, match="melted")


def test_then_fails_naming_the_error_when_the_action_raises() -> None:
    scenario = AggregateScenario(Lamp, "l1").given(Installed("l1", 60), Burnt("l1"))
    with pytest.raises(
        AssertionError, match=r"expected 1 event, but Lamp\.switch_on raised"
    ) as raised:
        scenario.when(Lamp.switch_on, NOON).then(SwitchedOn("l1", NOON))
    assert isinstance(raised.value.__cause__, LampBroken)


def test_a_factory_must_return_the_aggregate() -> None:
    with pytest.raises(TypeError, match="returned None, not a Lamp"):
        AggregateScenario(Lamp).when(lambda: None).then()


def test_a_history_that_cannot_be_applied_is_not_blamed_on_the_action() -> None:
    scenario = AggregateScenario(Lamp).given(Announced("l1")).when(Lamp.switch_on, NOON)
    with pytest.raises(TypeError, match="Lamp has no @applies method for Announced"):
        scenario.then()


def test_the_action_runs_once_for_several_checks() -> None:
    calls: list[Lamp] = []

    def switch_on(lamp: Lamp) -> None:
        calls.append(lamp)
        lamp.switch_on(NOON)

    shelf_lamp = Lamp.install("l1", 60)
    scenario = AggregateScenario(Lamp).given(shelf_lamp).when(switch_on)
    scenario.then(like(SwitchedOn))
    scenario.then(SwitchedOn("l1", NOON))
    assert calls == [shelf_lamp]
    scenario.when(switch_on).then()
    assert len(calls) == 2


def test_given_refuses_what_cannot_make_the_aggregate() -> None:
    with pytest.raises(TypeError, match="Shelf is state-stored"):
        AggregateScenario(Shelf).given(Installed("l1", 60))
    with pytest.raises(TypeError, match="expected a Lamp, got Shelf"):
        AggregateScenario(Lamp).given(Shelf("s1", 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not both"):
        AggregateScenario(Lamp).given(Lamp("l1"), Installed("l1", 60))
    with pytest.raises(TypeError, match="not 'installed'"):
        AggregateScenario(Lamp).given("installed")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"call when\(...\)"):
        AggregateScenario(Lamp).then()


# BusScenario


@dataclass(frozen=True)
class Install(Command):
    lamp_id: str
    watts: int


@dataclass(frozen=True)
class SwitchOn(Command):
    lamp_id: str


@dataclass(frozen=True)
class Announced(Event, type_name="testing.Announced"):
    lamp_id: str


lamps = Router()


@lamps.handler
def install(cmd: Install, uow: UnitOfWork) -> str:
    with uow:
        uow.repository(Lamp).add(Lamp.install(cmd.lamp_id, cmd.watts))
        uow.commit()
    return cmd.lamp_id


@lamps.handler
def switch_on(cmd: SwitchOn, uow: UnitOfWork) -> str:
    with uow:
        lamp = uow.repository(Lamp).get(cmd.lamp_id)
        if lamp is None:
            raise LookupError(f"no lamp {cmd.lamp_id}")
        result = lamp.switch_on(NOON)
        uow.commit()
    return result


@lamps.handler
def announce(event: SwitchedOn, announce: Recorder) -> None:
    announce(f"{event.lamp_id} is on")


def test_given_events_in_the_store_when_a_command_then_the_events_committed() -> None:
    announcer = Recorder()
    outcome = (
        BusScenario(lamps, dependencies={"announce": announcer})
        .given("Lamp-l1", Installed("l1", 60))
        .when(SwitchOn("l1"))
        .then(SwitchedOn("l1", NOON))
    )
    assert outcome.result == "switched on"
    assert outcome.dead_letters == ()
    assert announcer.calls == [Call(("l1 is on",), {})]
    (envelope,) = outcome.envelopes
    assert (envelope.stream, envelope.version) == ("Lamp-l1", 2)


def test_the_outcome_carries_the_envelopes_of_the_commit() -> None:
    command = Envelope.new(SwitchOn("l1"))
    outcome = (
        BusScenario(lamps, dependencies={"announce": Recorder()})
        .given("Lamp-l1", Installed("l1", 150))
        .when(command)
        .then(like(SwitchedOn), Burnt("l1"))
    )
    assert [e.causation_id for e in outcome.envelopes] == [command.message_id] * 2
    assert [e.correlation_id for e in outcome.envelopes] == [command.message_id] * 2


def test_messages_given_as_handled_are_not_part_of_the_outcome() -> None:
    scenario = BusScenario(lamps, dependencies={"announce": Recorder()}).given_handled(
        Install("l1", 60)
    )
    scenario.when(SwitchOn("l1")).then(SwitchedOn("l1", NOON))
    scenario.when(SwitchOn("l1")).then()


def test_the_bus_scenario_reports_differences_like_the_aggregate_one() -> None:
    scenario = BusScenario(lamps, dependencies={"announce": Recorder()})
    scenario.given("Lamp-l1", Installed("l1", 60)).when(SwitchOn("l1"))
    with pytest.raises(AssertionError) as raised:
        scenario.then(SwitchedOn("l2", NOON))
    message = str(raised.value)
    assert message.startswith("handling SwitchOn(lamp_id='l1'): the new events are not")
    assert "1: lamp_id: expected 'l2', got 'l1'" in message


def test_the_error_the_caller_gets() -> None:
    scenario = BusScenario(lamps, dependencies={"announce": Recorder()})
    error = scenario.when(SwitchOn("nope")).then_raises(LookupError, match="no lamp nope")
    assert isinstance(error, LookupError)
    with pytest.raises(AssertionError, match="expected KeyError, but the caller got LookupError"):
        scenario.then_raises(KeyError)
    with pytest.raises(AssertionError, match="but the caller got LookupError: no lamp nope"):
        scenario.then()


def test_then_raises_fails_when_the_command_succeeds() -> None:
    scenario = BusScenario(lamps, dependencies={"announce": Recorder()}).when(Install("l1", 5))
    with pytest.raises(AssertionError) as raised:
        scenario.then_raises(DomainError)
    assert "expected DomainError, but it returned 'l1' and committed:" in str(raised.value)
    assert "1. Installed(lamp_id='l1', watts=5)" in str(raised.value)


def test_dead_letters_fail_then_unless_expected() -> None:
    announcer = Recorder(fail_with=ConnectionError("speaker unplugged"))
    scenario = BusScenario(lamps, dependencies={"announce": announcer})
    scenario.given("Lamp-l1", Installed("l1", 60)).when(SwitchOn("l1"))
    with pytest.raises(AssertionError) as raised:
        scenario.then(SwitchedOn("l1", NOON))
    assert "expected 0 dead letters, got 1:" in str(raised.value)
    assert "announce on SwitchedOn: ConnectionError: speaker unplugged (3 attempts)" in str(
        raised.value
    )
    outcome = scenario.then(SwitchedOn("l1", NOON), dead_letters=1)
    assert outcome.dead_letters[0].attempts == 3
    assert len(announcer.calls) == 3


def test_the_unit_of_work_is_made_by_the_given_factory() -> None:
    made: list[UnitOfWork] = []

    def unit_of_work(store: MemoryStore) -> UnitOfWork:
        made.append(UnitOfWork(store))
        return made[-1]

    scenario = BusScenario(lamps, dependencies={"announce": Recorder()}, unit_of_work=unit_of_work)
    assert made == [scenario.uow]
    scenario.when(Install("l1", 5)).then(Installed("l1", 5))


def test_a_scenario_can_use_the_applications_composition_root() -> None:
    def bootstrap(store: MemoryStore, announce: Recorder) -> MessageBus:
        return MessageBus(lamps, dependencies={"uow": UnitOfWork(store), "announce": announce})

    announcer = Recorder(fail_with=TimeoutError(), failures=2)
    scenario = BusScenario.using(lambda store: bootstrap(store, announcer))
    assert scenario.bus.retry_waits is False
    scenario.given("Lamp-l1", Installed("l1", 60)).when(SwitchOn("l1")).then(like(SwitchedOn))
    assert len(announcer.calls) == 3
    assert scenario.store.stream_version("Lamp-l1") == 2


def test_using_needs_a_bus() -> None:
    with pytest.raises(TypeError, match="must return a MessageBus"):
        BusScenario.using(lambda store: store)  # type: ignore[arg-type,return-value]


def test_given_takes_a_stream_and_events() -> None:
    scenario = BusScenario(lamps, dependencies={"announce": Recorder()})
    with pytest.raises(TypeError, match="stream name first"):
        scenario.given(Installed("l1", 5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs at least one event"):
        scenario.given("Lamp-l1")
    with pytest.raises(TypeError, match="appends events, not Install"):
        scenario.given("Lamp-l1", Install("l1", 5))  # type: ignore[arg-type]
    scenario.given("Lamp-l1", Installed("l1", 5), SwitchedOn("l1", NOON))
    stored = scenario.store.read_stream("Lamp-l1")
    assert [r.version for r in stored] == [1, 2]
    assert stored[0].correlation_id == stored[1].correlation_id


# Recorder


def test_a_recorder_records_calls_and_returns_what_it_is_told() -> None:
    mail = Recorder(returns="sent")
    assert mail("ops", subject="hi") == "sent"
    assert mail.calls == [Call(("ops",), {"subject": "hi"})]


def test_a_recorder_fails_the_first_calls_then_succeeds() -> None:
    mail = Recorder(fail_with=ConnectionError("down"), failures=1)
    with pytest.raises(ConnectionError, match="down"):
        mail()
    assert mail() is None
    assert len(mail.calls) == 2
    with pytest.raises(ValueError, match="give fail_with too"):
        Recorder(failures=1)
