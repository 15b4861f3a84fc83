"""A killed runner on PostgreSQL is replaced without waiting for its lease.

The scenario of runners killed at random while appends go on is in
`tests/reliability/test_projection_crash.py`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
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
