"""Process managers on SQLite and PostgreSQL: reactions once per event, commands, timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.store.backends import BACKENDS
from tidings import AsyncMessageBus, Command, Envelope, Event, MessageBus, Router
from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.projections import AsyncProjectionRunner, ProjectionRunner
from tidings.sagas import AsyncProcesses, Process, Processes, ProcessManager, reacts
from tidings.scheduling import AsyncScheduler, Scheduler


@dataclass(frozen=True)
class Submitted(Event, type_name="test.pm.Submitted"):
    order_id: str
    amount: int


@dataclass(frozen=True)
class Paid(Event, type_name="test.pm.Paid"):
    order_id: str


@dataclass(frozen=True)
class Overdue(Event, type_name="test.pm.Overdue"):
    order_id: str


@dataclass(frozen=True)
class Note(Event, type_name="test.pm.Note"):
    order_id: str
    text: str


@dataclass(frozen=True)
class RequestPayment(Command):
    order_id: str
    amount: int


@dataclass(frozen=True)
class Ship(Command):
    order_id: str


@dataclass(frozen=True)
class Cancel(Command):
    order_id: str


class Payment(ProcessManager):
    name = "Payment"
    timeout = timedelta(hours=1)

    @reacts(key=lambda e: e.order_id, starts=True)
    def submitted(self, event: Submitted, process: Process) -> None:
        process.data["amount"] = event.amount
        process.send(RequestPayment(event.order_id, event.amount))
        process.schedule(Overdue(event.order_id), after=self.timeout)

    @reacts(key=lambda e: e.order_id)
    def paid(self, event: Paid, process: Process) -> None:
        process.send(Ship(event.order_id))
        process.end()

    @reacts(key=lambda e: e.order_id)
    def overdue(self, event: Overdue, process: Process) -> None:
        process.send(Cancel(event.order_id))
        process.end()

    @reacts(key=lambda e: e.order_id)
    def noted(self, event: Note, process: Process) -> None:
        process.data.setdefault("notes", []).append(event.text)


def command_log() -> tuple[Router, list[Envelope[Any]]]:
    sent: list[Envelope[Any]] = []
    lock = threading.Lock()
    router = Router()

    @router.handler
    def take(command: RequestPayment | Ship | Cancel, envelope: Envelope[Command]) -> None:
        with lock:
            sent.append(envelope)

    return router, sent


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with BACKENDS[request.param](tmp_path) as open_store:
        yield open_store


def stored(store: Any, stream: str, event: Event) -> Envelope[Event]:
    codec = Codec()
    envelope = Envelope.new(event)
    result = store.append(stream, [codec.new_event(envelope)])
    return envelope.stored(stream, result.version, result.positions[-1])


def test_a_process_starts_sends_commands_schedules_its_timeout_and_ends(opener: Any) -> None:
    store = opener(False)
    router, sent = command_log()
    try:
        scheduler = Scheduler(store)
        processes = Processes(store, MessageBus(router), [Payment()], scheduler=scheduler)
        submitted = stored(store, "Order-o1", Submitted("o1", 30))
        processes.handle(submitted)
        processes.handle(submitted)  # delivered twice: reacted to once
        (request,) = sent
        assert request.message == RequestPayment("o1", 30)
        assert request.correlation_id == submitted.correlation_id
        assert request.causation_id == submitted.message_id
        (timer,) = scheduler.pending()
        assert timer.type == "test.pm.Overdue" and timer.stream == "PaymentTimers-o1"

        processes.handle(stored(store, "Order-o1", Paid("o1")))
        assert [e.message for e in sent[1:]] == [Ship("o1")]
        state = processes.state(Payment(), "o1")
        assert state is not None and state.ended and state.data == {"amount": 30}
        processes.handle(stored(store, "Order-o1", Overdue("o1")))  # after the end: ignored
        assert len(sent) == 2
        # An event for an instance that never started, and which starts none, is ignored.
        processes.handle(stored(store, "Order-o2", Paid("o2")))
        assert processes.state(Payment(), "o2") is None and len(sent) == 2
    finally:
        store.close()


def test_a_repeated_reaction_after_a_crash_sends_its_commands_with_the_same_ids(
    opener: Any,
) -> None:
    store = opener(False)
    router, sent = command_log()
    try:
        scheduler = Scheduler(store)
        crashing = Processes(store, MessageBus(router), [Payment()], scheduler=scheduler)

        def crash(*args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt  # the process dies before it records the reaction

        crashing._record = crash  # type: ignore[method-assign]
        submitted = stored(store, "Order-o3", Submitted("o3", 5))
        with pytest.raises(KeyboardInterrupt):
            crashing.handle(submitted)
        Processes(store, MessageBus(router), [Payment()], scheduler=scheduler).handle(submitted)
        first, again = sent
        assert first.message == again.message and first.message_id == again.message_id
        assert len(scheduler.pending()) == 1
    finally:
        store.close()


def test_concurrent_events_for_one_instance_all_land_in_its_state(opener: Any) -> None:
    router, _ = command_log()
    setup = opener(False)
    Processes(setup, MessageBus(router), [Payment()], scheduler=Scheduler(setup)).handle(
        stored(setup, "Order-o4", Submitted("o4", 1))
    )
    notes = [stored(setup, "Order-o4", Note("o4", f"n{i}")) for i in range(6)]
    stores = [opener(False) for _ in range(3)]
    barrier = threading.Barrier(3)

    def work(index: int) -> None:
        processes = Processes(stores[index], MessageBus(router), [Payment()])
        barrier.wait()
        for envelope in notes[index::3]:
            processes.handle(envelope)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        state = Processes(setup, MessageBus(router), [Payment()]).state(Payment(), "o4")
        assert state is not None
        assert sorted(state.data["notes"]) == [f"n{i}" for i in range(6)]
        assert state.version == 7
    finally:
        for store in [setup, *stores]:
            store.close()


def test_through_a_projection_runner_a_timeout_cancels_the_order(opener: Any) -> None:
    store = opener(False)
    router, sent = command_log()
    try:
        scheduler = Scheduler(store)
        manager = Payment()
        manager.timeout = timedelta(0)
        processes = Processes(store, MessageBus(router), [manager], scheduler=scheduler)
        runner = ProjectionRunner(
            store, processes.projections(), poll_interval=0.05, lease=2.0, retry_waits=False
        )
        with runner.running():
            submitted = stored(store, "Order-o5", Submitted("o5", 9))
            runner.wait_for("process:Payment", submitted.position or 0)
            assert scheduler.fire_due() == 1
            (timer,) = store.read_stream("PaymentTimers-o5")
            runner.wait_for("process:Payment", timer.position)
        assert [e.message for e in sent] == [RequestPayment("o5", 9), Cancel("o5")]
        state = processes.state(manager, "o5")
        assert state is not None and state.ended
    finally:
        store.close()


def test_the_async_processes_react_through_the_async_runner(opener: Any) -> None:
    router, sent = command_log()

    async def scenario() -> None:
        store = opener(True)
        codec = Codec()
        try:
            processes = AsyncProcesses(
                store, AsyncMessageBus(router), [Payment()], scheduler=AsyncScheduler(store)
            )
            runner = AsyncProjectionRunner(
                store, processes.projections(), poll_interval=0.05, lease=2.0
            )
            async with runner.running():
                for event in (Submitted("o6", 3), Paid("o6")):
                    result = await store.append("Order-o6", [codec.new_event(Envelope.new(event))])
                await runner.wait_for("process:Payment", result.positions[-1])
            state = await processes.state(Payment(), "o6")
            assert state is not None and state.ended
        finally:
            await store.aclose()

    anyio.run(scenario)
    assert [e.message for e in sent] == [RequestPayment("o6", 3), Ship("o6")]


def test_process_managers_are_checked(tmp_path: Path) -> None:
    from tidings.store import SQLiteStore

    with pytest.raises(ConfigurationError, match="category"):

        class Dashed(ProcessManager):
            name = "a-b"

    with pytest.raises(ConfigurationError, match="takes"):

        class Untyped(ProcessManager):
            @reacts(key=str)
            def wrong(self, event, process):  # type: ignore[no-untyped-def]
                pass

    store = SQLiteStore(tmp_path / "events.db")
    router, _ = command_log()
    try:
        processes = Processes(store, MessageBus(router), [Payment()])
        with pytest.raises(ConfigurationError, match="scheduler"):
            processes.handle(stored(store, "Order-o7", Submitted("o7", 1)))
    finally:
        store.close()


def test_a_worker_killed_mid_reaction_is_finished_by_the_next_one(
    opener: Any, tmp_path: Path
) -> None:
    store = opener(False)
    try:
        url = (
            f"{store.conninfo}?schema={store.schema}"
            if hasattr(store, "schema")
            else f"sqlite:///{store.path}"
        )
        stored(store, "Order-o8", Submitted("o8", 12))
    finally:
        store.close()
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "sent.log"
    command = [sys.executable, "-m", "tests.sagas.process_worker", url, str(log), "o8"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    worker = subprocess.Popen([*command, "hang"], cwd=root, env=env, stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == b"handling"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finished = subprocess.run([*command, "finish"], cwd=root, env=env, timeout=60)
    assert finished.returncode == 0
    first, again = log.read_text().splitlines()
    assert first == again and first.endswith(" o8")  # sent again, with the same id
    store = opener(False)
    try:
        (reacted,) = store.read_stream("Payment-o8")
        assert reacted.type == "tidings.process.Reacted"
        assert len(Scheduler(store).pending()) == 1
    finally:
        store.close()
