"""Orchestrated sagas on SQLite and PostgreSQL: order, compensation, races, recovery, timeouts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.store.backends import BACKENDS
from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.sagas import (
    AsyncSagaRunner,
    Saga,
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
        def act(context: StepContext) -> dict[str, Any] | None:
            with self.lock:
                self.calls.append(context.idempotency_key)
                if name in self.failing:
                    raise RuntimeError(f"{name} refused")
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


def test_a_failing_compensation_leaves_the_saga_compensating_until_recovered(
    opener: Any,
) -> None:
    store, effects = opener(False), Effects()
    effects.failing.update({"car", "cancel_flight"})
    try:
        runner = SagaRunner(store, [saga(effects)], retry_wait=0)
        with pytest.raises(RuntimeError, match="cancel_flight refused"):
            runner.start("Trip", "t3", {})
        stuck = runner.state("Trip", "t3")
        assert stuck is not None and stuck.status is SagaStatus.COMPENSATING
        assert effects.calls.count("Trip-t3/flight/compensate") == 3
        effects.failing.discard("cancel_flight")
        (state,) = runner.recover()
        assert state.status is SagaStatus.COMPENSATED
        assert effects.calls.count("Trip-t3/hotel/compensate") == 1
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
        assert [c.step for c in completed] == ["flight", "hotel", "mail", "car"]
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
