"""A worker recovers the orchestrated sagas a crashed process left unfinished, when it starts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings import SQLiteStore, Worker
from tidings.sagas import Saga, SagaRunner, SagaStatus, Step, StepContext


class Crash(BaseException):
    """The process dying in the middle of a step."""


def test_a_worker_runs_on_the_sagas_left_unfinished(tmp_path: Path) -> None:
    calls: list[str] = []

    def book(name: str) -> Callable[[StepContext], None]:
        def act(context: StepContext) -> None:
            calls.append(context.idempotency_key)

        return act

    def crash(context: StepContext) -> None:
        raise Crash

    store = SQLiteStore(tmp_path / "sagas.db")
    crashing = Saga("Trip", [Step("flight", book("flight")), Step("hotel", crash)])
    with pytest.raises(Crash):
        SagaRunner(store, [crashing]).start("Trip", "t1", {})
    trip = Saga("Trip", [Step("flight", book("flight")), Step("hotel", book("hotel"))])
    sagas = SagaRunner(store, [trip])
    assert (state := sagas.state("Trip", "t1")) is not None
    assert state.status is SagaStatus.RUNNING
    worker = Worker(store, sagas=[sagas], poll_interval=0.05)
    worker.prepare()
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        deadline = time.monotonic() + 10
        while (found := sagas.state("Trip", "t1")) is None or found.status is SagaStatus.RUNNING:
            assert time.monotonic() < deadline, "not recovered"
            time.sleep(0.05)
    finally:
        worker.stop()
        running.join(timeout=10)
    assert found.status is SagaStatus.COMPLETED
    assert calls == ["Trip-t1/flight", "Trip-t1/hotel"]  # the flight once, the hotel on
    store.close()
