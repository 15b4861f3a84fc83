"""Three runners of one projection, killed and frozen at random: never two active at once.

Each event the projection handles is recorded with the runner that handled
it and the time, in the transaction that moves the checkpoint, so a runner
that lost its lease (killed, or frozen with SIGSTOP past its lease and then
let go on, still believing it leads) cannot record anything unless fencing
fails. From the rows, each runner's tenures (its runs of consecutive
positions) are intervals in time, which must never overlap; every event a
writer was told is stored must be recorded once.
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Backend, backend, deposit
from tests.reliability.figures import Figures
from tests.reliability.history import History
from tests.reliability.tenure import Tenure
from tidings.projections import ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = 3
ROUNDS = 6
LEASE = 0.5


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def start(env: Backend, table: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.tenure", env.url, table, str(LEASE)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


def leader(store: Any, table: str, runners: list[subprocess.Popen[str]]) -> int:
    """The index of the runner that recorded the latest event, once one has."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.transaction() as tx:
            row = tx.connection.execute(
                f"SELECT runner FROM {table} ORDER BY position DESC LIMIT 1"
            ).fetchone()
        pids = [process.pid for process in runners]
        if row is not None and int(row[0]) in pids:
            return pids.index(int(row[0]))
        time.sleep(0.05)
    raise AssertionError("no runner recorded an event within 30 s")


def tenures(rows: list[tuple[int, str, int, float]]) -> list[tuple[int, float, float]]:
    """(runner, first time, last time) of each run of consecutive positions one runner handled."""
    found: list[tuple[int, float, float]] = []
    for _, _, runner, at in sorted(rows):
        if found and found[-1][0] == runner:
            found[-1] = (runner, found[-1][1], max(found[-1][2], at))
        else:
            found.append((runner, at, at))
    return found


def test_runners_killed_and_frozen_at_random_are_never_two_active_at_once(
    env: Backend, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("leader failover, 3 runners, kill or freeze", workers=RUNNERS)
    store = env.open(False)
    table = env.qualify("tenure")
    history = History()
    stop = threading.Event()
    writer_seed = rng.randrange(2**32)

    def write() -> None:
        own = random.Random(writer_seed)
        while not stop.is_set():
            event = deposit("a")
            operation = history.invoke(str(event.event_id), "writer")
            try:
                store.append(f"Account-{own.randrange(10)}", [event])
            except Exception as exc:
                history.complete(operation, "unknown", repr(exc))
            else:
                history.complete(operation, "ok")
            time.sleep(own.uniform(0.001, 0.004))

    runners = [start(env, table) for _ in range(RUNNERS)]
    writer = threading.Thread(target=write)
    writer.start()
    try:
        for number in range(ROUNDS):
            time.sleep(rng.uniform(0.2, 0.6))
            # The first victim is the leader, killed, so that a take-over is always
            # seen: a frozen leader on PostgreSQL keeps its session's advisory lock,
            # so freezing it hands nothing over. The others are anyone, leader or
            # not, killed or frozen.
            victim = leader(store, table, runners) if number == 0 else rng.randrange(RUNNERS)
            if number == 0 or rng.random() < 0.5:
                runners[victim].send_signal(signal.SIGKILL)
                runners[victim].wait()
                runners[victim] = start(env, table)
            else:  # frozen past its lease, then let go on as if nothing happened
                runners[victim].send_signal(signal.SIGSTOP)
                time.sleep(LEASE * rng.uniform(1.5, 3))
                runners[victim].send_signal(signal.SIGCONT)
            figures.kills += 1
        stop.set()
        writer.join()
        last = store.watermark().last_position  # all committed, readable yet or not
        ProjectionRunner(store, [Tenure(table)], poll_interval=0.05).wait_for(
            "tenure", last, timeout=30
        )
    finally:
        stop.set()
        for process in runners:
            process.send_signal(signal.SIGKILL)
            process.wait()
    with store.transaction() as tx:
        rows: list[Any] = tx.connection.execute(
            f"SELECT position, event_id, runner, at FROM {table}"
        ).fetchall()
    store.close()
    found = history.check(event_id for _, event_id, _, _ in rows)
    figures.events = len(rows)
    figures.lost, figures.doubled = len(found.lost), len(found.doubled)
    figures.report(record_property)
    assert not found, f"{found} ({history.summary()})"
    periods = sorted(
        tenures([(int(p), e, int(r), float(a)) for p, e, r, a in rows]), key=lambda t: t[1]
    )
    record_property("tenures", len(periods))
    for before, after in itertools.pairwise(periods):
        assert after[1] >= before[2], (
            f"runner {after[0]} was active while {before[0]} was: {before} {after}"
        )
    assert len({runner for runner, _, _ in periods}) > 1, "no runner ever took over"
