"""A projection runner SIGKILLed at random while two write: its read model equals a rebuild.

The ledger projection is transactional (its rows and checkpoint commit
together) and keys each entry by event id, so an event handled twice would
fail its batch rather than count twice. Runners in processes of their own are
killed at random moments and a new one started each time; once the writers
stop, a survivor catches up. Every event a writer was told is stored must be
in the read model once, and the read model must equal a rebuild from the log.
"""

from __future__ import annotations

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

from tests.projections.ledger import Backend, Ledger, backend, deposit
from tests.reliability.figures import Figures
from tests.reliability.history import History
from tidings.projections import ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 2
KILLS = 5


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
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


def entry_ids(store: Any, ledger: Ledger) -> list[str]:
    """The event ids the read model holds, each time it holds one."""
    with store.transaction() as tx:
        rows = tx.connection.execute(f"SELECT event_id FROM {ledger.entries}").fetchall()
    return [str(event_id) for (event_id,) in rows]


def test_a_runner_killed_at_random_resumes_to_the_read_model_of_a_rebuild(
    env: Backend, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("projection runner SIGKILLed", workers=WRITERS, kills=KILLS)
    store = env.open(False)
    ledger = env.ledger()
    assert isinstance(ledger, Ledger)
    prefix = env.qualify("ledger")
    history = History()
    stop = threading.Event()
    written: list[tuple[str, int]] = []
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]

    def write(worker: int) -> None:
        own = random.Random(seeds[worker])
        while not stop.is_set():
            batch = [
                (f"a{own.randrange(4)}", own.randrange(1, 100)) for _ in range(own.randint(1, 4))
            ]
            events = [deposit(account, amount) for account, amount in batch]
            operations = [history.invoke(str(e.event_id), f"writer-{worker}") for e in events]
            try:
                store.append(f"Account-{own.randrange(10)}", events)
            except Exception as exc:
                for operation in operations:
                    history.complete(operation, "unknown", repr(exc))
            else:
                written.extend(batch)
                for operation in operations:
                    history.complete(operation, "ok")
            time.sleep(own.uniform(0, 0.002))

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(KILLS):
            process = start_runner(env, prefix)
            time.sleep(rng.uniform(0.1, 0.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    last = store.watermark().last_position  # all committed, readable yet or not
    survivor = start_runner(env, prefix)
    try:
        ProjectionRunner(store, [ledger], poll_interval=0.05).wait_for("ledger", last, timeout=30)
    finally:
        survivor.send_signal(signal.SIGKILL)
        survivor.wait()
    resumed = env.read(ledger)
    found = history.check(entry_ids(store, ledger))

    fresh = env.ledger(prefix="rebuilt", name="rebuilt")
    ProjectionRunner(store, [fresh], batch_size=200).rebuild("rebuilt")
    totals: dict[str, tuple[int, int]] = {}
    for account, amount in written:
        balance, entries = totals.get(account, (0, 0))
        totals[account] = (balance + amount, entries + 1)
    store.close()
    figures.events = len(history.operations())
    figures.lost, figures.doubled = len(found.lost), len(found.doubled)
    figures.report(record_property)
    assert not found, f"{found} ({history.summary()})"
    assert resumed == env.read(fresh)
    if not history.count("unknown"):  # else what the writers saw stored is not all there is
        assert resumed == totals
