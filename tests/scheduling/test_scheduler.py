"""Scheduled messages on SQLite and PostgreSQL: durable, due once, shared between schedulers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest

from tests.store.backends import BACKENDS
from tests.store.readable import wait_readable
from tidings import AsyncMessageBus, Command, Envelope, Event, MessageBus, Router
from tidings.errors import ConfigurationError
from tidings.scheduling import AsyncScheduler, MessageKind, Scheduler


@dataclass(frozen=True)
class PaymentOverdue(Event, type_name="test.sched.PaymentOverdue"):
    order_id: str


@dataclass(frozen=True)
class Remind(Command):
    order_id: str


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with BACKENDS[request.param](tmp_path) as open_store:
        yield open_store


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_an_event_is_appended_to_its_stream_once_when_due_even_after_a_restart(
    opener: Any,
) -> None:
    store = opener(False)
    due = later(60)
    schedule_id = Scheduler(store).schedule(PaymentOverdue("o1"), at=due, stream="Timers-o1")
    store.close()

    store = opener(False)
    try:
        scheduler = Scheduler(store)
        (waiting,) = scheduler.pending()
        assert (waiting.id, waiting.kind, waiting.type) == (
            schedule_id,
            MessageKind.EVENT,
            "test.sched.PaymentOverdue",
        )
        assert abs((waiting.due_at - due).total_seconds()) < 0.001
        assert scheduler.fire_due(now=due - timedelta(seconds=1)) == 0
        assert store.read_stream("Timers-o1") == []
        assert scheduler.fire_due(now=due) == 1
        assert scheduler.fire_due(now=due + timedelta(hours=1)) == 0
        (record,) = store.read_stream("Timers-o1")
        assert record.event_id == schedule_id and record.type == "test.sched.PaymentOverdue"
        assert scheduler.pending() == []
    finally:
        store.close()


def test_scheduling_an_id_twice_keeps_one_and_cancel_forgets_it(opener: Any) -> None:
    store = opener(False)
    try:
        scheduler = Scheduler(store)
        first = scheduler.schedule(PaymentOverdue("o2"), after=10, stream="Timers-o2")
        scheduler.schedule(PaymentOverdue("o2"), after=99, stream="Timers-o2", schedule_id=first)
        assert len(scheduler.pending()) == 1
        assert scheduler.cancel(first) is True
        assert scheduler.cancel(first) is False
        assert scheduler.fire_due(now=later(3600)) == 0
    finally:
        store.close()


def test_a_message_scheduled_in_a_transaction_that_rolls_back_is_not_kept(opener: Any) -> None:
    store = opener(False)
    try:
        scheduler = Scheduler(store)
        scheduler.pending()  # the table exists from here on
        with pytest.raises(RuntimeError), store.transaction() as tx:
            scheduler.schedule(PaymentOverdue("o3"), after=0, stream="Timers-o3", tx=tx)
            raise RuntimeError("the state change failed")
        assert scheduler.pending() == []
        with store.transaction() as tx:
            scheduler.schedule(PaymentOverdue("o3"), after=0, stream="Timers-o3", tx=tx)
        assert len(scheduler.pending()) == 1
    finally:
        store.close()


def test_schedulers_in_parallel_fire_each_message_once(opener: Any) -> None:
    setup = opener(False)
    for n in range(30):
        Scheduler(setup).schedule(PaymentOverdue(f"o{n}"), after=0, stream=f"Timers-o{n}")
    stores = [opener(False) for _ in range(3)]
    barrier = threading.Barrier(3)
    fired: list[int] = []

    def work(store: Any) -> None:
        scheduler = Scheduler(store, batch_size=4)
        barrier.wait()
        while True:
            count = scheduler.fire_due()
            fired.append(count)
            if not count:
                return

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sum(fired) == 30
        wait_readable(setup)
        assert len(setup.read_all()) == 30
    finally:
        for store in [setup, *stores]:
            store.close()


def test_a_command_goes_through_the_bus_with_the_schedule_id_and_is_retried(
    opener: Any,
) -> None:
    seen: list[Envelope[Any]] = []
    failing = [True]
    router = Router()

    @router.handler
    def remind(command: Remind, envelope: Envelope[Remind]) -> None:
        if failing[0]:
            raise ConnectionError("mail server down")
        seen.append(envelope)

    store = opener(False)
    try:
        bus = MessageBus(router, retry_waits=False)
        scheduler = Scheduler(store, bus=bus, commands=[Remind], retry_after=0)
        conversation = uuid4()
        schedule_id = scheduler.schedule(Remind("o4"), after=0, correlation_id=conversation)
        assert scheduler.fire_due() == 1
        (waiting,) = scheduler.pending()
        assert waiting.attempts == 1 and waiting.error == "ConnectionError: mail server down"
        failing[0] = False
        assert scheduler.fire_due() == 1
        (envelope,) = seen
        assert envelope.message == Remind("o4")
        assert envelope.message_id == schedule_id and envelope.correlation_id == conversation
        assert scheduler.pending() == []
    finally:
        store.close()


def test_a_claimed_command_is_not_fired_again_before_its_lease_runs_out(opener: Any) -> None:
    router = Router()
    calls: list[str] = []

    @router.handler
    def remind(command: Remind) -> None:
        calls.append(command.order_id)

    store = opener(False)
    try:
        bus = MessageBus(router)
        Scheduler(store, commands=[Remind]).schedule(Remind("o5"), after=0)
        # A scheduler that died after claiming: its lease holds the others off.
        dying = Scheduler(store, bus=bus, commands=[Remind], lease=0.3)
        dying._deliver = lambda *args: None  # type: ignore[method-assign]
        assert dying.fire_due() == 1
        other = Scheduler(store, bus=bus, commands=[Remind])
        assert other.fire_due() == 0
        assert other.fire_due(now=later(1)) == 0  # the lease is on the clock, not `now`
        import time

        time.sleep(0.35)
        assert other.fire_due() == 1
        assert calls == ["o5"] and other.pending() == []
    finally:
        store.close()


def test_the_async_scheduler_runs_until_stopped(opener: Any) -> None:
    router = Router()
    reminded = []

    @router.handler
    async def remind(command: Remind) -> None:
        reminded.append(command.order_id)

    async def scenario() -> None:
        store = opener(True)
        try:
            scheduler = AsyncScheduler(store, bus=AsyncMessageBus(router), commands=[Remind])
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: scheduler.run(poll_interval=0.05))
                await scheduler.schedule(PaymentOverdue("o6"), after=0.1, stream="Timers-o6")
                await scheduler.schedule(Remind("o6"), after=0.1)
                for _ in range(250):  # up to 5 s
                    if not await scheduler.pending():
                        break
                    await anyio.sleep(0.02)
                scheduler.stop()
            assert reminded == ["o6"]
            assert len(await store.read_stream("Timers-o6")) == 1
        finally:
            await store.aclose()

    anyio.run(scenario)


def test_bad_schedules_are_refused(tmp_path: Path) -> None:
    from tidings.store import MemoryStore, SQLiteStore

    store = SQLiteStore(tmp_path / "events.db")
    try:
        scheduler = Scheduler(store, commands=[Remind])
        with pytest.raises(ValueError, match="needs a stream"):
            scheduler.schedule(PaymentOverdue("o"), after=1)
        with pytest.raises(ValueError, match="either"):
            scheduler.schedule(Remind("o"))
        with pytest.raises(ValueError, match="timezone"):
            scheduler.schedule(Remind("o"), at=datetime(2030, 1, 1))

        @dataclass(frozen=True)
        class Other(Command):
            pass

        with pytest.raises(ConfigurationError, match="commands="):
            scheduler.schedule(Other(), after=1)
    finally:
        store.close()
    with pytest.raises(TypeError, match="SQLite or PostgreSQL"):
        Scheduler(MemoryStore())


def test_a_command_whose_scheduler_was_killed_is_delivered_once_the_lease_ends(
    opener: Any, tmp_path: Path
) -> None:
    store = opener(False)
    try:
        url = _url_of(store)
        schedule_id = Scheduler(store, commands=[Remind]).schedule(Remind("o7"), after=0)
    finally:
        store.close()
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "handled.log"
    command = [sys.executable, "-m", "tests.scheduling.worker", url, str(log)]
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
    assert first == again == f"{schedule_id} o7"


def _url_of(store: Any) -> str:
    schema = getattr(store, "schema", None)
    if schema is not None:
        return f"{store.conninfo}?schema={schema}"
    return f"sqlite:///{store.path}"


@dataclass(frozen=True)
class PlaceOrder(Command):
    order_id: str


def test_what_a_handler_schedules_continues_its_conversation(opener: Any) -> None:
    seen: dict[str, Envelope[Any]] = {}
    router = Router()
    scheduler_of: list[Scheduler] = []

    @router.handler
    def place(command: PlaceOrder, envelope: Envelope[PlaceOrder]) -> None:
        seen["place"] = envelope
        scheduler_of[0].schedule(Remind(command.order_id), after=0)
        scheduler_of[0].schedule(
            PaymentOverdue(command.order_id), after=0, stream=f"Timers-{command.order_id}"
        )

    @router.handler
    def remind(command: Remind, envelope: Envelope[Remind]) -> None:
        seen["remind"] = envelope

    store = opener(False)
    try:
        bus = MessageBus(router)
        scheduler_of.append(Scheduler(store, bus=bus, commands=[Remind]))
        bus.handle(PlaceOrder("o8"))
        assert scheduler_of[0].fire_due() == 2
        placed, reminded = seen["place"], seen["remind"]
        assert reminded.correlation_id == placed.correlation_id
        assert reminded.causation_id == placed.message_id
        (overdue,) = store.read_stream("Timers-o8")
        assert (overdue.correlation_id, overdue.causation_id) == (
            placed.correlation_id,
            placed.message_id,
        )
    finally:
        store.close()


def test_a_command_handled_for_longer_than_its_lease_is_kept_by_its_scheduler(
    opener: Any,
) -> None:
    router = Router()
    delivered: list[str] = []

    @router.handler
    async def remind(command: Remind) -> None:
        delivered.append(command.order_id)
        await anyio.sleep(1.0)  # more than three leases

    async def scenario() -> None:
        stores = [opener(True), opener(True)]
        try:
            schedulers = [
                AsyncScheduler(store, bus=AsyncMessageBus(router), commands=[Remind], lease=0.3)
                for store in stores
            ]
            await schedulers[0].schedule(Remind("o9"), after=0)
            async with anyio.create_task_group() as tasks:
                for scheduler in schedulers:
                    tasks.start_soon(partial(scheduler.run, poll_interval=0.02))
                for _ in range(500):  # up to 10 s
                    if not await schedulers[0].pending():
                        break
                    await anyio.sleep(0.02)
                await anyio.sleep(0.5)  # a repeat would be under way by now
                for scheduler in schedulers:
                    scheduler.stop()
            assert delivered == ["o9"]
        finally:
            for store in stores:
                await store.aclose()

    anyio.run(scenario)
