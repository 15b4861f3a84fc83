"""Writer processes SIGKILLed at random: the file stays sound, nothing acknowledged is lost.

Writer processes (`tests.reliability.kill_writer`) append operations while
the test kills one at random every few tenths of a second and starts it
again; a restarted writer retries the operation it never heard back about
with the same event ids. Afterwards the SQLite file passes `PRAGMA
integrity_check`, every operation a writer was told is stored is there, and
none is stored twice (each is one batch; its data names it, so even new ids
would show).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.reliability.figures import Figures
from tests.reliability.history import History, Outcome
from tidings.store.urls import open_store

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
OPERATIONS = 200  # per writer
KILLS = 8
PAUSE = 0.01  # longest pause between a writer's operations, in seconds
PATIENCE = 60.0


def start(url: str, index: int, log: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.kill_writer",
            url,
            str(index),
            str(OPERATIONS),
            str(log),
            str(seed),
            str(PAUSE),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(log: Path) -> int:
    return log.read_bytes().count(b"\n") if log.exists() else 0


def read_history(logs: list[Path]) -> tuple[History, dict[str, set[str]]]:
    """What the writers were told, and each operation's event ids.

    An operation is `ok` once acknowledged, else `unknown` (killed in flight).
    """
    history = History()
    ids: dict[str, set[str]] = {}
    for index, log in enumerate(logs):
        outcomes: dict[str, Outcome] = {}
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "invoke":
                ids[parts[1]] = set(parts[2].split(","))
                outcomes.setdefault(parts[1], "unknown")
            elif len(parts) == 2 and parts[0] == "ok":
                outcomes[parts[1]] = "ok"
        for operation, outcome in outcomes.items():
            history.complete(history.invoke(operation, f"writer-{index}"), outcome)
    return history, ids


def test_writers_killed_at_random_keep_every_acknowledged_append_once(
    store_url: str,
    rng: random.Random,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    figures = Figures("writer processes SIGKILLed", workers=WRITERS)
    store = open_store(store_url)
    store.stream_version("Writer-0")  # makes the schema before the writers race to
    store.close()
    logs = [tmp_path / f"writer-{index}.log" for index in range(WRITERS)]
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]
    processes = [start(store_url, i, logs[i], seeds[i]) for i in range(WRITERS)]
    try:
        # Kill only a writer seen to append since it last started, so each kill
        # lands mid-work on a slow machine too, not while Python still imports.
        lines = [0] * WRITERS
        give_up = time.monotonic() + PATIENCE
        while figures.kills < KILLS and time.monotonic() < give_up:
            time.sleep(rng.uniform(0.05, 0.3))
            busy = [
                index
                for index in range(WRITERS)
                if processes[index].poll() is None and _lines(logs[index]) > lines[index]
            ]
            if not busy:
                if all(process.poll() is not None for process in processes):
                    break  # every writer finished: too fast to kill often enough
                continue
            index = rng.choice(busy)
            processes[index].send_signal(signal.SIGKILL)
            processes[index].wait()
            figures.kills += 1
            lines[index] = _lines(logs[index])
            processes[index] = start(store_url, index, logs[index], seeds[index])
        deadline = time.monotonic() + PATIENCE
        for index, process in enumerate(processes):
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if out.split() != ["done"]:  # killed at its very end, or failed: run it out
                process = start(store_url, index, logs[index], seeds[index])
                out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0 and out.split() == ["done"], err
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    store = open_store(store_url)
    try:
        log = store.read_all()
        versions = {
            index: [r.version for r in store.read_stream(f"Writer-{index}")]
            for index in range(WRITERS)
        }
    finally:
        store.close()
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    history, ids = read_history(logs)
    stored: dict[str, set[str]] = {}
    for record in log:
        stored.setdefault(json.loads(record.data)["operation"], set()).add(str(record.event_id))
    # An operation shows once if its batch is stored whole, twice if more than it was.
    batches: list[str] = []
    for operation, found in stored.items():
        batches += [operation] * (1 if found <= ids.get(operation, set()) else 2)
    partial = [op for op, found in stored.items() if found < ids.get(op, set())]
    violations = history.check(batches)
    figures.events = len(log)
    figures.lost, figures.doubled = len(violations.lost), len(violations.doubled)
    figures.report(record_property)
    assert not violations, str(violations)
    assert not partial, f"batches stored in part: {partial[:5]}"
    assert history.count("ok") == WRITERS * OPERATIONS
    assert figures.kills == KILLS, f"the writers finished after {figures.kills} kills"
    for index, numbers in versions.items():
        assert numbers == list(range(1, len(numbers) + 1)), index
