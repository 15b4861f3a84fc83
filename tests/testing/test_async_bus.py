from pathlib import Path

import pytest

from tests.testing.async_lamps import async_lamps
from tests.testing.lamps import (
    NOON,
    Burnt,
    Install,
    Installed,
    SwitchedOn,
    SwitchOn,
)
from tidings import (
    AsyncMemoryStore,
    AsyncMessageBus,
    AsyncSQLDeadLetters,
    AsyncSQLiteStore,
    AsyncUnitOfWork,
    DomainError,
    Envelope,
    MessageBus,
)
from tidings.testing import AsyncBusScenario, Call, Recorder, like

pytestmark = pytest.mark.anyio


async def test_given_events_in_the_store_when_a_command_then_the_events_committed() -> None:
    announcer = Recorder()
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": announcer})
    await scenario.given("Lamp-l1", Installed("l1", 60))
    outcome = await scenario.when(SwitchOn("l1")).then(SwitchedOn("l1", NOON))
    assert outcome.result == "switched on"
    assert outcome.dead_letters == ()
    assert announcer.calls == [Call(("l1 is on",), {})]
    (envelope,) = outcome.envelopes
    assert (envelope.stream, envelope.version) == ("Lamp-l1", 2)


async def test_the_outcome_carries_the_envelopes_of_the_commit() -> None:
    command = Envelope.new(SwitchOn("l1"))
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    await scenario.given("Lamp-l1", Installed("l1", 150))
    outcome = await scenario.when(command).then(like(SwitchedOn), Burnt("l1"))
    assert [e.causation_id for e in outcome.envelopes] == [command.message_id] * 2
    assert [e.correlation_id for e in outcome.envelopes] == [command.message_id] * 2


async def test_messages_given_as_handled_are_not_part_of_the_outcome() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    assert await scenario.given_handled(Install("l1", 60)) is scenario
    await scenario.when(SwitchOn("l1")).then(SwitchedOn("l1", NOON))
    await scenario.when(SwitchOn("l1")).then()


async def test_the_bus_scenario_reports_differences_like_the_aggregate_one() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    await scenario.given("Lamp-l1", Installed("l1", 60))
    with pytest.raises(AssertionError) as raised:
        await scenario.when(SwitchOn("l1")).then(SwitchedOn("l2", NOON))
    message = str(raised.value)
    assert message.startswith("handling SwitchOn(lamp_id='l1'): the new events are not")
    assert "1: lamp_id: expected 'l2', got 'l1'" in message


async def test_the_error_the_caller_gets() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    error = await scenario.when(SwitchOn("nope")).then_raises(LookupError, match="no lamp nope")
    assert isinstance(error, LookupError)
    with pytest.raises(AssertionError, match="expected KeyError, but the caller got LookupError"):
        await scenario.then_raises(KeyError)
    with pytest.raises(AssertionError, match="but the caller got LookupError: no lamp nope"):
        await scenario.then()


async def test_then_raises_fails_when_the_command_succeeds() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    with pytest.raises(AssertionError) as raised:
        await scenario.when(Install("l1", 5)).then_raises(DomainError)
    assert "expected DomainError, but it returned 'l1' and committed:" in str(raised.value)
    assert "1. Installed(lamp_id='l1', watts=5)" in str(raised.value)


async def test_then_needs_a_message() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    with pytest.raises(RuntimeError, match=r"call when\(message\) before then"):
        await scenario.then()


async def test_dead_letters_fail_then_unless_expected() -> None:
    announcer = Recorder(fail_with=ConnectionError("speaker unplugged"))
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": announcer})
    await scenario.given("Lamp-l1", Installed("l1", 60))
    scenario.when(SwitchOn("l1"))
    with pytest.raises(AssertionError) as raised:
        await scenario.then(SwitchedOn("l1", NOON))
    assert "expected 0 dead letters, got 1:" in str(raised.value)
    assert "announce on SwitchedOn: ConnectionError: speaker unplugged (3 attempts)" in str(
        raised.value
    )
    outcome = await scenario.then(SwitchedOn("l1", NOON), dead_letters=1)
    assert outcome.dead_letters[0].attempts == 3
    assert len(announcer.calls) == 3


async def test_dead_letters_are_read_from_an_async_dead_letter_store(tmp_path: Path) -> None:
    store = AsyncSQLiteStore(tmp_path / "letters.db")
    try:
        letters = AsyncSQLDeadLetters(store)
        scenario = AsyncBusScenario(
            async_lamps,
            dependencies={"announce": Recorder(fail_with=ConnectionError("speaker unplugged"))},
            dead_letters=letters,
        )
        await scenario.given("Lamp-l1", Installed("l1", 60))
        scenario.when(SwitchOn("l1"))
        with pytest.raises(AssertionError, match="expected 0 dead letters, got 1:"):
            await scenario.then(SwitchedOn("l1", NOON))
        outcome = await scenario.then(SwitchedOn("l1", NOON), dead_letters=1)
        assert outcome.dead_letters == tuple(await letters.list())
        # Letters already in the store belong to earlier messages, not to the next outcome.
        await scenario.given("Lamp-l2", Installed("l2", 60))
        await scenario.when(SwitchOn("l2")).then(SwitchedOn("l2", NOON), dead_letters=1)
        assert await letters.count() == 2
    finally:
        await store.aclose()


async def test_the_unit_of_work_is_made_by_the_given_factory() -> None:
    made: list[AsyncUnitOfWork] = []

    def unit_of_work(store: AsyncMemoryStore) -> AsyncUnitOfWork:
        made.append(AsyncUnitOfWork(store))
        return made[-1]

    scenario = AsyncBusScenario(
        async_lamps, dependencies={"announce": Recorder()}, unit_of_work=unit_of_work
    )
    assert made == [scenario.uow]
    await scenario.when(Install("l1", 5)).then(Installed("l1", 5))


async def test_a_scenario_can_use_the_applications_composition_root() -> None:
    def bootstrap(store: AsyncMemoryStore, announce: Recorder) -> AsyncMessageBus:
        return AsyncMessageBus(
            async_lamps, dependencies={"uow": AsyncUnitOfWork(store), "announce": announce}
        )

    announcer = Recorder(fail_with=TimeoutError(), failures=2)
    scenario = AsyncBusScenario.using(lambda store: bootstrap(store, announcer))
    assert scenario.bus.retry_waits is False
    assert scenario.uow is None
    await scenario.given("Lamp-l1", Installed("l1", 60))
    await scenario.when(SwitchOn("l1")).then(like(SwitchedOn))
    assert len(announcer.calls) == 3
    assert await scenario.store.stream_version("Lamp-l1") == 2


async def test_using_needs_an_async_bus() -> None:
    blocking = MessageBus([])
    with pytest.raises(TypeError, match=r"must return an AsyncMessageBus, not <tidings\._sync"):
        AsyncBusScenario.using(lambda store: blocking)  # type: ignore[arg-type,return-value]


async def test_given_takes_a_stream_and_events() -> None:
    scenario = AsyncBusScenario(async_lamps, dependencies={"announce": Recorder()})
    with pytest.raises(TypeError, match="stream name first"):
        await scenario.given(Installed("l1", 5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs at least one event"):
        await scenario.given("Lamp-l1")
    with pytest.raises(TypeError, match="appends events, not Install"):
        await scenario.given("Lamp-l1", Install("l1", 5))  # type: ignore[arg-type]
    assert await scenario.given("Lamp-l1", Installed("l1", 5), SwitchedOn("l1", NOON)) is scenario
    stored = await scenario.store.read_stream("Lamp-l1")
    assert [r.version for r in stored] == [1, 2]
    assert stored[0].correlation_id == stored[1].correlation_id
