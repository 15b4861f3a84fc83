"""Sagas whose worker is SIGKILLed at random, some missing a step's deadline: all end, once.

Workers in processes of their own start thirty checkout sagas; each is
killed at a random moment and a new one started, which recovers what the
last left and goes on. Every fifth saga's `charge` misses its deadline,
across a crash or not. In the end every saga has finished: the punctual ones
completed, every step's effect taken and none undone; the late ones
compensated, `reserve` and `charge` undone and nothing shipped. Each step's
outcome is in its saga's stream once; a call repeated after a crash carries
the same idempotency key, so its effect is taken once.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tests.reliability.saga_worker import checkout, effects_table, is_slow
from tidings import Codec
from tidings.sagas import SagaRunner, SagaStatus, StepCompensated, StepCompleted, StepFailed
from tidings.store.urls import open_store

ROOT = Path(__file__).resolve().parents[2]
SAGAS = 30
KILLS = 4


def worker(url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.saga_worker", url, str(SAGAS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "working"
    return process


def test_sagas_whose_worker_is_killed_at_random_all_end_each_step_recorded_once(
    store_url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("sagas SIGKILLed, some timing out", workers=1, kills=KILLS, events=SAGAS)
    history = History()
    for n in range(SAGAS):
        history.complete(history.invoke(f"c{n}", "client"), "unknown")  # whoever is killed
    for _ in range(KILLS):
        process = worker(store_url)
        time.sleep(rng.uniform(0.1, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
    last = worker(store_url)
    assert last.stdout is not None
    assert last.stdout.read().strip() == "done"
    assert last.wait(timeout=60) == 0

    store = open_store(store_url)
    try:
        runner = SagaRunner(store, [checkout(store)])
        states = {f"c{n}": runner.state("Checkout", f"c{n}") for n in range(SAGAS)}
        codec = Codec()
        outcomes: Counter[tuple[str, str, str]] = Counter()
        for saga_id in states:
            for record in store.read_stream(f"Checkout-{saga_id}"):
                event = codec.envelope(record).message
                if isinstance(event, StepCompleted | StepFailed | StepCompensated):
                    outcomes[(saga_id, type(event).__name__, event.step)] += 1
        with store.transaction() as tx:
            table = effects_table(store)
            connection: Any = tx.connection  # type: ignore[attr-defined]
            calls = dict(connection.execute(f"SELECT key, calls FROM {table}").fetchall())
    finally:
        store.close()
    found = history.check(saga_id for saga_id, state in states.items() if state is not None)
    doubled = [outcome for outcome, times in outcomes.items() if times > 1]
    figures.lost = len(found.lost) + sum(1 for state in states.values() if state is None)
    figures.doubled = len(doubled)
    record_property("repeated_calls", sum(int(n) - 1 for n in calls.values()))
    figures.report(record_property)
    assert not found and not doubled, (found, doubled)
    for saga_id, state in states.items():
        assert state is not None
        prefix = f"Checkout-{saga_id}/"
        keys = {key.removeprefix(prefix) for key in calls if key.startswith(prefix)}
        if state.status is SagaStatus.COMPLETED:
            assert not is_slow(saga_id), saga_id
            assert keys == {"reserve", "charge", "ship"}, (saga_id, keys)
            continue
        # Late, or punctual but killed while charging until the deadline had passed.
        assert state.status is SagaStatus.COMPENSATED, (saga_id, state)
        assert outcomes[(saga_id, "StepFailed", "charge")] == 1, saga_id
        assert state.compensated == ["charge", "reserve"]
        assert {"reserve", "reserve/compensate", "charge/compensate"} <= keys, (saga_id, keys)
        assert keys <= {"reserve", "reserve/compensate", "charge", "charge/compensate"}
    compensated = [
        s for s, state in states.items() if state and state.status is SagaStatus.COMPENSATED
    ]
    record_property("compensated", len(compensated))
