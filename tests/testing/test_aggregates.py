from datetime import UTC, datetime
from unittest.mock import ANY

import pytest

from tests.testing.lamps import (
    NOON,
    Announced,
    Burnt,
    Installed,
    Lamp,
    LampBroken,
    Shelf,
    SwitchedOn,
)
from tidings.testing import AggregateScenario, like


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
