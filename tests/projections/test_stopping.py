"""A runner's `stop` is final: one that comes before `run` begins is never lost.

A shutdown signal can arrive while a process is still starting its runner;
`run` must then return rather than run on until the next signal.
"""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from tests.projections.ledger import MemoryLedger, deposit
from tidings import AsyncMemoryStore, AsyncProjectionRunner, MemoryStore, ProjectionRunner

pytestmark = pytest.mark.timeout(30)


def in_thread(runner: ProjectionRunner) -> tuple[threading.Thread, threading.Event]:
    """`runner.run()` in a daemon thread, and an event set when it returns."""
    done = threading.Event()

    def run() -> None:
        runner.run()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_a_blocking_runner_stopped_before_it_runs_returns_at_once_having_done_nothing() -> None:
    store = MemoryStore()
    store.append("Account-a", [deposit("a")])
    ledger = MemoryLedger()
    runner = ProjectionRunner(store, [ledger], poll_interval=0.01)
    runner.stop()
    thread, done = in_thread(runner)
    assert done.wait(5), "run went on after stop"
    thread.join()
    assert ledger.seen == {}


def test_a_blocking_runner_stopped_as_its_thread_starts_returns() -> None:
    runner = ProjectionRunner(MemoryStore(), [MemoryLedger()], poll_interval=0.01)
    thread, done = in_thread(runner)
    runner.stop()  # before, during or after `prepare`: whichever, `run` returns
    assert done.wait(5), "run went on after stop"
    thread.join()


def test_an_async_runner_stopped_before_its_task_begins_returns() -> None:
    async def scenario() -> None:
        store = AsyncMemoryStore()
        await store.append("Account-a", [deposit("a")])
        ledger = MemoryLedger()
        runner = AsyncProjectionRunner(store, [ledger], poll_interval=0.01)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(runner.run)
                runner.stop()  # the task has not begun yet
        assert ledger.seen == {}

    anyio.run(scenario)


def test_an_async_runner_stopped_while_it_prepares_returns() -> None:
    async def scenario() -> None:
        runner = AsyncProjectionRunner(AsyncMemoryStore(), [MemoryLedger()], poll_interval=0.01)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(runner.run)
                await anyio.lowlevel.checkpoint()  # `run` has begun, awaiting in `prepare`
                runner.stop()

    anyio.run(scenario)


def test_a_running_runner_still_stops_and_a_stopped_one_runs_nothing_more() -> None:
    store = MemoryStore()
    ledger = MemoryLedger()
    runner = ProjectionRunner(store, [ledger], poll_interval=0.01)
    with runner.running():
        store.append("Account-a", [deposit("a")])
        runner.wait_for("ledger", store.head_position(), timeout=5)
    assert len(ledger.seen) == 1
    runner.stop()
    store.append("Account-a", [deposit("a")])
    with runner.running():
        pass
    runner.run()  # returns: the stop stands
    assert len(ledger.seen) == 1
