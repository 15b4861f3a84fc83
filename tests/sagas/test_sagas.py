"""Orchestrated sagas on SQLite and PostgreSQL: order, compensation, races, recovery, timeouts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.store.backends import BACKENDS
from tidings import Command, Envelope, Message, MessageBus, Router
from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.sagas import (
    AsyncSagaRunner,
    Saga,
    SagaRecoveryFailed,
    SagaRunner,
    SagaStatus,
    Step,
    StepCompleted,
    StepContext,
)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with BACKENDS[request.param](tmp_path) as open_store:
        yield open_store


class Effects:
    """A service that takes each effect once per idempotency key, counting every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.taken: dict[str, str] = {}
        self.failing: set[str] = set()
        self.lock = threading.Lock()

    def step(self, name: str, result: dict[str, Any] | None = None) -> Any:
        """An action that fails when its name, or its idempotency key, is among `failing`."""

        def act(context: StepContext) -> dict[str, Any] | None:
            with self.lock:
                key = context.idempotency_key
                self.calls.append(key)
                if name in self.failing:
                    raise RuntimeError(f"{name} refused")
                if key in self.failing:
                    raise RuntimeError(f"{key} refused")
                self.taken.setdefault(context.idempotency_key, name)
            return result

        return act


def saga(effects: Effects) -> Saga:
    return Saga(
        "Trip",
        [
            Step("flight", effects.step("flight", {"seat": "12A"}), effects.step("cancel_flight")),
            Step("hotel", effects.step("hotel"), effects.step("cancel_hotel")),
            Step("mail", effects.step("mail")),
            Step("car", effects.step("car"), effects.step("cancel_car")),
        ],
    )


def test_steps_run_in_order_with_stable_keys_and_their_results_join_the_data(
    opener: Any,
) -> None:
    store, effects = opener(False), Effects()
    try:
        state = SagaRunner(store, [saga(effects)]).start("Trip", "t1", {"who": "ada"})
        assert state.status is SagaStatus.COMPLETED
        assert state.data == {"who": "ada", "seat": "12A"}
        assert effects.calls == ["Trip-t1/flight", "Trip-t1/hotel", "Trip-t1/mail", "Trip-t1/car"]
        types = [record.type for record in store.read_stream("Trip-t1")]
        assert types[0] == "tidings.saga.Started" and types[-1] == "tidings.saga.Completed"
        # Starting it again finds it finished and runs nothing.
        again = SagaRunner(store, [saga(effects)]).start("Trip", "t1", {"who": "bob"})
        assert again.data["who"] == "ada" and len(effects.calls) == 4
    finally:
        store.close()


def test_a_failing_step_compensates_the_completed_ones_in_reverse(opener: Any) -> None:
    store, effects = opener(False), Effects()
    effects.failing.add("car")
    try:
        state = SagaRunner(store, [saga(effects)]).start("Trip", "t2", {})
        assert state.status is SagaStatus.COMPENSATED
        assert state.error == "RuntimeError: car refused"
        # mail has no compensation; car never took effect.
        assert effects.calls[-2:] == ["Trip-t2/hotel/compensate", "Trip-t2/flight/compensate"]
        assert state.compensated == ["hotel", "flight"]
    finally:
        store.close()


def test_a_failing_compensation_parks_the_saga_until_it_is_resumed(opener: Any) -> None:
    store, effects = opener(False), Effects()
    effects.failing.update({"car", "cancel_flight"})
    try:
        runner = SagaRunner(store, [saga(effects)], retry_wait=0)
        stuck = runner.start("Trip", "t3", {})
        assert stuck.status is SagaStatus.PARKED
        assert stuck.error == "RuntimeError: cancel_flight refused"
        assert effects.calls.count("Trip-t3/flight/compensate") == 3
        assert runner.state("Trip", "t3") == stuck
        (letter,) = runner.dead_letters.list(handler="saga:Trip")
        assert letter.parked and letter.envelope.stream == "Trip-t3"
        assert letter.error == "RuntimeError: cancel_flight refused" and letter.attempts == 3
        # Parked, it is left alone by recovery until someone resumes it.
        assert runner.recover() == []
        assert effects.calls.count("Trip-t3/flight/compensate") == 3
        effects.failing.discard("cancel_flight")
        state = runner.resume("Trip", "t3")
        assert state.status is SagaStatus.COMPENSATED
        assert state.compensated == ["hotel", "flight"]
        assert effects.calls.count("Trip-t3/hotel/compensate") == 1
        assert runner.dead_letters.list(handler="saga:Trip") == []
    finally:
        store.close()


def test_recovery_runs_every_saga_on_its_own_and_parks_the_one_that_is_stuck(
    opener: Any,
) -> None:
    effects = Effects()

    class Crash(BaseException):
        pass

    def crash(context: StepContext) -> None:
        raise Crash

    crashing = Saga(
        "Trip",
        [
            Step("flight", effects.step("flight"), effects.step("cancel_flight")),
            Step("hotel", crash),
        ],
    )
    store = opener(False)
    try:
        ids = [f"t{n}" for n in range(6)]
        for saga_id in ids:
            with pytest.raises(Crash):
                SagaRunner(store, [crashing]).start("Trip", saga_id, {})
        # Recovered, t0's hotel refuses and its flight cannot be cancelled; t3's hotel refuses.
        effects.failing.update({"Trip-t0/hotel", "Trip-t0/flight/compensate", "Trip-t3/hotel"})
        runner = SagaRunner(store, [saga(effects)], retry_wait=0)
        with pytest.raises(SagaRecoveryFailed) as raised:
            runner.recover()
        failed = raised.value
        assert [(f.saga, f.saga_id) for f in failed.failures] == [("Trip", "t0")]
        assert failed.failures[0].error == "RuntimeError: Trip-t0/flight/compensate refused"
        assert "Trip-t0" in str(failed)
        statuses = {state.saga_id: state.status for state in failed.recovered}
        assert statuses == {
            "t1": SagaStatus.COMPLETED,
            "t2": SagaStatus.COMPLETED,
            "t3": SagaStatus.COMPENSATED,
            "t4": SagaStatus.COMPLETED,
            "t5": SagaStatus.COMPLETED,
        }
        parked = runner.state("Trip", "t0")
        assert parked is not None and parked.status is SagaStatus.PARKED
        (letter,) = runner.dead_letters.list(handler="saga:Trip")
        assert letter.parked and letter.envelope.stream == "Trip-t0"
        # The next start of the process finds nothing left to do, and tries t0 no more.
        attempts = effects.calls.count("Trip-t0/flight/compensate")
        assert runner.recover() == []
        assert effects.calls.count("Trip-t0/flight/compensate") == attempts
    finally:
        store.close()


def test_runners_racing_on_one_saga_record_each_step_once(opener: Any) -> None:
    effects = Effects()
    stores = [opener(False) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[Any] = []

    def drive(store: Any) -> None:
        barrier.wait()
        outcomes.append(SagaRunner(store, [saga(effects)]).start("Trip", "t4", {"n": 1}))

    threads = [threading.Thread(target=drive, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(outcomes) == 4
        assert {o.status for o in outcomes} == {SagaStatus.COMPLETED}
        assert len(effects.taken) == 4  # every call of a step carried its one key
        records = stores[0].read_stream("Trip-t4")
        codec = Codec()
        completed = [
            codec.envelope(r).message for r in records if r.type == StepCompleted.__event_type__
        ]
        steps = [c.step for c in completed if isinstance(c, StepCompleted)]
        assert steps == ["flight", "hotel", "mail", "car"]
    finally:
        for store in stores:
            store.close()


def test_the_async_runner_times_a_step_out_and_compensates_it(opener: Any) -> None:
    effects = Effects()

    async def slow(context: StepContext) -> None:
        await anyio.sleep(5)

    trip = Saga(
        "Trip",
        [
            Step("flight", effects.step("flight"), effects.step("cancel_flight")),
            Step("hotel", slow, effects.step("cancel_hotel"), timeout=0.1),
        ],
    )

    async def scenario() -> None:
        store = opener(True)
        try:
            with anyio.fail_after(3):
                state = await AsyncSagaRunner(store, [trip]).start("Trip", "t5", {})
            assert state.status is SagaStatus.COMPENSATED
            assert state.compensated == ["hotel", "flight"]
            assert "deadline" in (state.error or "")
            assert await AsyncSagaRunner(store, [trip]).recover() == []
        finally:
            await store.aclose()

    anyio.run(scenario)


def test_the_async_runner_recovers_an_interrupted_saga(opener: Any) -> None:
    effects = Effects()

    class Crash(BaseException):
        pass

    def crash(context: StepContext) -> None:
        raise Crash

    crashing = Saga("Trip", [Step("flight", effects.step("flight")), Step("hotel", crash)])

    async def scenario() -> None:
        store = opener(True)
        try:
            with pytest.raises(Crash):
                await AsyncSagaRunner(store, [crashing]).start("Trip", "t6", {})
            (state,) = await AsyncSagaRunner(store, [saga(effects)]).recover()
            assert state.status is SagaStatus.COMPLETED
            assert effects.calls.count("Trip-t6/flight") == 1
        finally:
            await store.aclose()

    anyio.run(scenario)


def test_definitions_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="category"):
        Saga("Trip-x", [Step("a", print)])
    with pytest.raises(ConfigurationError, match="no steps"):
        Saga("Trip", [])
    with pytest.raises(ConfigurationError, match="two steps"):
        Saga("Trip", [Step("a", print), Step("a", print)])
    with pytest.raises(ConfigurationError, match="timeout"):
        Step("a", print, timeout=0)


def test_an_unknown_saga_or_a_bad_id_is_refused(tmp_path: Path) -> None:
    from tidings.store import SQLiteStore

    store = SQLiteStore(tmp_path / "events.db")
    try:
        runner = SagaRunner(store, [saga(Effects())])
        with pytest.raises(ConfigurationError, match="no saga is named 'Cruise'"):
            runner.start("Cruise", "c1", {})
        with pytest.raises(ValueError, match="saga id"):
            runner.start("Trip", "", {})
    finally:
        store.close()


@dataclass(frozen=True)
class BookTrip(Command):
    trip_id: str


@dataclass(frozen=True)
class ReserveSeat(Command):
    trip_id: str


def test_a_saga_started_by_a_handler_and_what_its_steps_send_continue_the_conversation(
    opener: Any,
) -> None:
    seen: dict[str, Envelope[Message]] = {}
    router = Router()
    bus_of: list[MessageBus] = []
    runner_of: list[SagaRunner] = []

    @router.handler
    def book(command: BookTrip, envelope: Envelope[BookTrip]) -> None:
        seen["book"] = envelope
        runner_of[0].start("Trip", command.trip_id, {})

    @router.handler
    def reserve(command: ReserveSeat, envelope: Envelope[ReserveSeat]) -> None:
        seen["reserve"] = envelope

    def send_reservation(context: StepContext) -> None:
        bus_of[0].handle(ReserveSeat(context.saga_id))

    store = opener(False)
    try:
        bus_of.append(MessageBus(router))
        runner_of.append(SagaRunner(store, [Saga("Trip", [Step("seat", send_reservation)])]))
        bus_of[0].handle(BookTrip("t7"))
        booking, reservation = seen["book"], seen["reserve"]
        started, *rest = store.read_stream("Trip-t7")
        assert (started.correlation_id, started.causation_id) == (
            booking.correlation_id,
            booking.message_id,
        )
        assert {record.correlation_id for record in rest} == {booking.correlation_id}
        assert reservation.correlation_id == booking.correlation_id
        assert reservation.causation_id == started.event_id
    finally:
        store.close()
