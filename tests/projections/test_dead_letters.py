"""A projection's dead letters and parked events, in the store the bus keeps its letters in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Backend, Deposited, Ledger, Noted, backend, deposit, note
from tests.runner_options import RunnerOptions
from tidings import Codec, Envelope, Event, Router
from tidings.dead_letters import AsyncSQLDeadLetters, DeadLetter, SQLDeadLetters, UndecodedEvent
from tidings.projections import (
    AsyncProjectionRunner,
    OnFailure,
    ProjectionRunner,
    ProjectionState,
    durable_handlers,
    handles,
)
from tidings.retry import Retry

FAST: RunnerOptions = {"poll_interval": 0.05, "lease": 2.0, "retry_waits": False}


@pytest.fixture(params=["sqlite", "postgres"])
def sql_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


class MovesOn(Ledger):
    """Fails on deposits to `bad` while `broken`; dead-letters them and moves on."""

    retry = Retry(attempts=2, first_delay=0)
    on_failure = OnFailure.DEAD_LETTER

    def __init__(self, prefix: str, name: str) -> None:
        super().__init__(prefix, name)
        self.broken = True

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        if event.account == "bad" and self.broken:
            raise RuntimeError("cannot book to bad")
        return super().deposited(event, envelope, tx)


class Parks(MovesOn):
    on_failure = OnFailure.PARK


def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        time.sleep(0.01)


def parked(runner: ProjectionRunner, name: str) -> bool:
    return {s.name: s.state for s in runner.status()}[name] is ProjectionState.PARKED


def bus_letter() -> DeadLetter:
    return DeadLetter.of(Envelope.new(Noted("x")), "app.mailer", RuntimeError("down"), 3)


def test_a_dead_lettered_event_is_kept_with_the_bus_letters_and_retried(
    sql_env: Backend,
) -> None:
    store = sql_env.open(False)
    picky = MovesOn(sql_env.qualify("picky"), "picky")
    runner = ProjectionRunner(store, [picky], **FAST)
    bus_letters = SQLDeadLetters(store)
    from_bus = bus_letter()
    bus_letters.add(from_bus)
    with runner.running():
        bad = store.append("Account-2", [deposit("bad", 5)])
        last = store.append("Account-1", [deposit("good", 2)])
        runner.wait_for("picky", last.positions[-1])
    mine = [letter for letter in bus_letters.list() if letter.id != from_bus.id]
    [letter] = mine
    assert runner.letters_of() == mine
    assert (letter.handler, letter.parked, letter.attempts) == ("projection:picky", False, 2)
    assert letter.error == "RuntimeError: cannot book to bad"
    assert "raise RuntimeError" in letter.traceback
    assert letter.envelope.message == Deposited("bad", 5)
    stored = store.read_all()[0]
    assert (letter.envelope.message_id, letter.envelope.stream, letter.envelope.position) == (
        stored.event_id,
        "Account-2",
        bad.positions[0],
    )
    with pytest.raises(LookupError, match="not of a projection"):
        runner.retry_dead_letter(from_bus.id)

    assert runner.retry_dead_letter(letter.id) is False
    [again] = runner.letters_of("picky")
    assert again.id != letter.id and again.envelope == letter.envelope
    picky.broken = False
    assert runner.retry_dead_letter(again.id) is True
    assert bus_letters.list() == [from_bus]
    assert sql_env.read(picky) == {"good": (2, 1), "bad": (5, 1)}
    with pytest.raises(KeyError):
        runner.retry_dead_letter(again.id)
    store.close()


def test_a_parked_event_is_a_parked_letter_until_the_projection_resumes(
    sql_env: Backend,
) -> None:
    store = sql_env.open(False)
    parks = Parks(sql_env.qualify("parks"), "parks")
    runner = ProjectionRunner(store, [parks], **FAST)
    letters = SQLDeadLetters(store)
    with runner.running():
        bad = store.append("Account-2", [deposit("bad", 5)])
        last = store.append("Account-1", [deposit("good", 2)])
        until(lambda: parked(runner, "parks"))
        [letter] = letters.list(handler="projection:parks")
        assert letter.parked and letter.envelope.position == bad.positions[0]
        assert letter.error == "RuntimeError: cannot book to bad"
        with pytest.raises(ValueError, match="resume or skip"):
            runner.retry_dead_letter(letter.id)
        runner.resume("parks")  # still failing: parked again, on a new letter
        until(lambda: [x.id for x in letters.list()] not in ([], [letter.id]))
        until(lambda: parked(runner, "parks"))
        [again] = letters.list()
        assert again.parked and again.envelope == letter.envelope
        parks.broken = False
        runner.resume("parks")
        runner.wait_for("parks", last.positions[-1])
    assert letters.list() == []
    assert sql_env.read(parks) == {"good": (2, 1), "bad": (5, 1)}
    store.close()


def test_skipping_drops_the_parked_event_for_that_projection_alone(sql_env: Backend) -> None:
    store = sql_env.open(False)
    parks = Parks(sql_env.qualify("parks"), "parks")
    ledger = sql_env.ledger()
    runner = ProjectionRunner(store, [parks, ledger], **FAST)
    console = ProjectionRunner(store, [])  # as `tidings dlq drop` has it: no projections
    with runner.running():
        store.append("Account-2", [deposit("bad", 5)])
        last = store.append("Account-1", [deposit("good", 2)])
        until(lambda: parked(runner, "parks"))
        [letter] = runner.letters_of("parks")
        assert console.skip("parks") == letter
        runner.wait_for("parks", last.positions[-1])
        runner.wait_for("ledger", last.positions[-1])
    assert sql_env.read(parks) == {"good": (2, 1)}
    assert sql_env.read(ledger) == {"good": (2, 1), "bad": (5, 1)}
    assert SQLDeadLetters(store).list() == []
    assert {s.name: s.state for s in runner.status()}["parks"] is ProjectionState.STOPPED
    with pytest.raises(ValueError, match="'parks' is not parked"):
        console.skip("parks")
    store.close()


def test_a_rebuild_records_anew_what_still_fails(sql_env: Backend) -> None:
    store = sql_env.open(False)
    picky = MovesOn(sql_env.qualify("picky"), "picky")
    runner = ProjectionRunner(store, [picky], **FAST)
    with runner.running():
        made = [deposit("good", 1), deposit("bad", 5), deposit("good", 2), deposit("bad", 7)]
        last = store.append("Account-2", made)
        runner.wait_for("picky", last.positions[-1])
        before = runner.letters_of("picky")
    runner.rebuild("picky")  # here: past a failing event in a batch, and ending on one
    after = runner.letters_of("picky")
    assert [x.envelope for x in after] == [x.envelope for x in before]
    assert [x.envelope.position for x in after] == list(last.positions[1::2])
    assert not {x.id for x in after} & {x.id for x in before}
    assert sql_env.read(picky) == {"good": (3, 2)}
    [status] = runner.status()
    assert (status.state, status.position, status.lag) == (
        ProjectionState.STOPPED,
        last.positions[-1],
        0,
    )
    store.close()


def test_the_async_runner_keeps_retries_and_skips_letters(sql_env: Backend) -> None:
    picky = MovesOn(sql_env.qualify("picky"), "picky")
    parks = Parks(sql_env.qualify("parks"), "parks")

    async def main() -> None:
        store = sql_env.open(True)
        runner = AsyncProjectionRunner(store, [picky, parks], **FAST)
        letters = AsyncSQLDeadLetters(store)
        async with runner.running():
            last = await store.append("Account-2", [deposit("bad", 5), deposit("good", 1)])
            await runner.wait_for("picky", last.positions[-1])
            for _ in range(500):
                states = {s.name: s.state for s in await runner.status()}
                if states["parks"] is ProjectionState.PARKED:
                    break
                await asyncio.sleep(0.01)
            parked_letter, moved_letter = sorted(await letters.list(), key=lambda x: x.handler)
            assert (parked_letter.handler, parked_letter.parked) == ("projection:parks", True)
            assert (moved_letter.handler, moved_letter.parked) == ("projection:picky", False)
            assert await runner.skip("parks") == parked_letter
            picky.broken = False
            assert await runner.retry_dead_letter(moved_letter.id) is True
            await runner.wait_for("parks", last.positions[-1])
        assert await letters.list() == []
        await store.aclose()

    asyncio.run(main())
    assert sql_env.read(picky) == {"good": (1, 1), "bad": (5, 1)}
    assert sql_env.read(parks) == {"good": (1, 1)}


class Blind(Codec):
    """Cannot decode deposits, as a process without their class."""

    def resolve(self, type_name: str) -> type[Event]:
        if type_name == Deposited.__event_type__:
            return super().resolve("no.such.Type")
        return super().resolve(type_name)


def test_an_event_that_cannot_be_decoded_is_kept_as_the_log_has_it(sql_env: Backend) -> None:
    store = sql_env.open(False)
    router = Router()

    @router.handler
    def everything(event: Event) -> None:
        pass

    [projection] = durable_handlers(router, retry=Retry(attempts=1))
    runner = ProjectionRunner(store, [projection], codec=Blind(), **FAST)
    with runner.running():
        last = store.append("Account-1", [deposit("a", 3), note("x")])
        runner.wait_for(projection.name, last.positions[-1])
    [letter] = runner.letters_of()
    assert isinstance(letter.envelope.message, UndecodedEvent)
    assert letter.error.startswith("UnknownEventType")
    with pytest.raises(LookupError, match="not loaded"):
        runner.retry_dead_letter(letter.id)
    [decoded] = SQLDeadLetters(store).list()  # where the class is known
    assert decoded.envelope.message == Deposited("a", 3)
    assert decoded.envelope.message_id == store.read_all()[0].event_id
    store.close()
