import pytest

from tests.testing.lamps import (
    NOON,
    Burnt,
    Install,
    Installed,
    SwitchedOn,
    SwitchOn,
    lamps,
)
from tidings import (
    DomainError,
    Envelope,
    MemoryStore,
    MessageBus,
    UnitOfWork,
)
from tidings.testing import BusScenario, Call, Recorder, like


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
