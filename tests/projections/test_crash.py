"""A runner killed at random points while appends go on loses nothing and doubles nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.projections.ledger import Backend, backend, deposit
from tidings.projections import ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def sql_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def start_runner(env: Backend, prefix: str, lease: float = 0.5) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.projections.crash_runner", env.url, prefix, str(lease)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


def test_a_runner_killed_at_random_resumes_to_the_read_model_of_a_rebuild(
    sql_env: Backend,
) -> None:
    store = sql_env.open(False)
    ledger = sql_env.ledger()
    prefix = sql_env.qualify("ledger")
    stop = threading.Event()
    written: list[tuple[str, int]] = []
    positions: list[int] = []

    def write() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            batch = [
                (f"a{rng.randrange(4)}", rng.randrange(1, 100)) for _ in range(rng.randint(1, 4))
            ]
            result = store.append(f"Account-{rng.randrange(10)}", [deposit(a, n) for a, n in batch])
            written.extend(batch)
            positions.append(result.positions[-1])
            time.sleep(0.001)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        rng = random.Random()
        for _ in range(4):
            process = start_runner(sql_env, prefix)
            time.sleep(rng.uniform(0.1, 0.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
    finally:
        stop.set()
        writer.join()
    last = max(positions)
    survivor = start_runner(sql_env, prefix)
    try:
        watcher = ProjectionRunner(store, [ledger], poll_interval=0.05)
        watcher.wait_for("ledger", last, timeout=20)
    finally:
        survivor.send_signal(signal.SIGKILL)
        survivor.wait()
    resumed = sql_env.read(ledger)

    fresh = sql_env.ledger(prefix="rebuilt", name="rebuilt")
    ProjectionRunner(store, [fresh], batch_size=200).rebuild("rebuilt")
    totals: dict[str, tuple[int, int]] = {}
    for account, amount in written:
        balance, entries = totals.get(account, (0, 0))
        totals[account] = (balance + amount, entries + 1)
    assert resumed == sql_env.read(fresh) == totals
    store.close()


def test_on_postgres_a_killed_runner_is_taken_over_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    with backend("postgres", tmp_path) as env:
        store = env.open(False)
        ledger = env.ledger()
        prefix = env.qualify("ledger")
        first = store.append("Account-1", [deposit("a", 1)])
        holder = start_runner(env, prefix, lease=60)
        watcher = ProjectionRunner(store, [ledger], poll_interval=0.05)
        watcher.wait_for("ledger", first.positions[-1], timeout=10)
        standby = start_runner(env, prefix, lease=60)
        try:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            killed_at = time.monotonic()
            second = store.append("Account-1", [deposit("a", 1)])
            watcher.wait_for("ledger", second.positions[-1], timeout=10)
            assert time.monotonic() - killed_at < 5  # far less than the 60 s lease
        finally:
            standby.send_signal(signal.SIGKILL)
            standby.wait()
        assert env.read(ledger) == {"a": (2, 2)}
        store.close()
