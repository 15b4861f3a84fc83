"""20,000 dead letters replayed by a process SIGKILLed midway: none lost, the effect once each.

A replayer runs each letter's handler again and drops the letter once the
handler succeeded, so at any moment each letter has taken effect or is still
recorded (both, for the one in flight). It is killed at a random point; then
that holds, and a second replayer finishes the rest. In the end no letter is
left, each event's effect is there once (the handler is idempotent by event
id), and at most the letter in flight at the kill was delivered twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tests.reliability.replay_app import HANDLER, Ordered, prepare, replayed_table
from tidings import Envelope
from tidings.dead_letters import DeadLetter, SQLDeadLetters
from tidings.store.urls import open_store

ROOT = Path(__file__).resolve().parents[2]
LETTERS = 20_000

# Two processes replaying 20,000 letters one commit each: about 40 s on an idle
# machine, several times that on a loaded one; the second replayer has 300 s.
pytestmark = pytest.mark.timeout(420)


def replayer(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.letter_replay", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def effects(store: Any) -> dict[str, int]:
    with store.transaction() as tx:
        rows = tx.connection.execute(f"SELECT id, calls FROM {replayed_table(store)}").fetchall()
    return {str(key): int(calls) for key, calls in rows}


def test_dead_letters_replayed_by_a_process_killed_midway_are_each_taken_once(
    store_url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("20,000 dead letters replayed, killed midway", workers=1, kills=1)
    store = open_store(store_url)
    letters = SQLDeadLetters(store)
    history = History()
    prepare(store)
    assert letters.count() == 0  # made ready outside the transaction that fills it
    error = ConnectionError("the warehouse was down")
    with store.transaction() as tx:
        for order in range(LETTERS):
            envelope: Envelope[Ordered] = Envelope.new(Ordered(order))
            letters.add(DeadLetter.of(envelope, HANDLER, error, 3), tx=tx)
            history.complete(history.invoke(str(envelope.message_id), "letters"), "ok")
    figures.events = LETTERS

    kill_after = rng.randrange(2_000, LETTERS - 2_000)
    first = replayer(store_url)
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("replayed") and int(line.split()[1]) >= kill_after:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    left = {str(letter.envelope.message_id) for letter in letters.list(handler=HANDLER)}
    taken = effects(store)
    lost = [op.key for op in history.operations() if op.key not in taken and op.key not in left]
    assert not lost, f"{len(lost)} letters neither took effect nor are recorded: {lost[:5]}"
    assert left and taken, "the replayer was not killed midway"
    record_property("replayed_before_kill", len(taken))

    second = replayer(store_url)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0 and out.strip().endswith("done"), out[-500:]
    taken = effects(store)
    remaining = letters.count()
    store.close()
    found = history.check(taken)
    delivered_twice = sum(1 for calls in taken.values() if calls > 1)
    figures.lost, figures.doubled = len(found.lost) + remaining, len(found.doubled)
    record_property("delivered_twice", delivered_twice)
    figures.report(record_property)
    assert not found and remaining == 0, (found, remaining)
    assert delivered_twice <= 1, f"{delivered_twice} letters delivered twice; one was in flight"
