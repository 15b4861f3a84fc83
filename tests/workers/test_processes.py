"""Workers in processes of their own share a partitioned projection while appends go on.

Four workers start; then, every couple of seconds, one is SIGKILLed or
stopped with SIGTERM and another joins, while two writers append to 10,000
streams (a few hot ones get long histories). Once the writers stop and the
workers catch up, the history the projection wrote in its read model's
transactions must show every event handled exactly once, each stream's
versions in order without a gap, each stream in one partition, and for each
partition one worker at a time: fencing tokens that only grow, one owner each.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Backend, backend
from tests.workers.visits import Visits, visit
from tidings.projections import ProjectionRunner, partition_of

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 8
STREAMS = 10_000
HOT = 200  # streams with long histories: one in each transaction
WORKERS = 4
STEP = 2.0  # seconds between two changes of the workers
LEASE = 1.0


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def start_worker(env: Backend, table: str) -> subprocess.Popen[str]:
    return ready(spawn_worker(env, table))


def spawn_worker(env: Backend, table: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.workers.visits",
            env.url,
            table,
            str(PARTITIONS),
            str(LEASE),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def ready(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """`process`, once it says it is running (its SIGTERM handler is installed)."""
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


def history(store: Any, table: str) -> list[tuple[str, int, int, int, str, int]]:
    with store.transaction() as tx:
        rows = tx.connection.execute(
            f"SELECT stream, version, position, part, owner, token FROM {table} ORDER BY id"
        ).fetchall()
    return [(str(s), int(v), int(p), int(part), str(o), int(t)) for s, v, p, part, o, t in rows]


def test_workers_joining_and_killed_handle_every_event_once_in_order(env: Backend) -> None:
    store = env.open(False)
    table = env.qualify("visit_history")
    stop = threading.Event()
    appended: list[int] = []
    numbers = iter(range(1, 10**9))
    lock = threading.Lock()

    cold = [f"Visit-{n}" for n in range(HOT, STREAMS)]
    random.Random(3).shuffle(cold)
    streams = iter(cold * 10)

    def write(seed: int) -> None:
        # Each transaction: a hot stream (long histories) and four of the others, in turn.
        rng = random.Random(seed)
        while not stop.is_set():
            with lock:
                hot = f"Visit-{rng.randrange(HOT)}"
                batches = [(hot, [visit(next(numbers)) for _ in range(rng.randint(1, 3))])]
                batches += [(next(streams), [visit(next(numbers))]) for _ in range(4)]
            with store.transaction() as tx:
                last = max(tx.append(stream, batch).positions[-1] for stream, batch in batches)
            with lock:
                appended.append(last)
            time.sleep(0.001)

    writers = [threading.Thread(target=write, args=(seed,)) for seed in (7, 11)]
    workers = [ready(worker) for worker in [spawn_worker(env, table) for _ in range(WORKERS)]]
    gone: list[subprocess.Popen[str]] = []
    joining: list[subprocess.Popen[str]] = []  # started, not yet seen running
    for writer in writers:
        writer.start()
    try:
        # Kill, stop, kill, stop...: each time the oldest worker, and a new one joins.
        for step in range(6):
            time.sleep(STEP)
            leaving = workers.pop(0)
            if leaving in joining:  # not signalled before its handler is installed
                joining.remove(ready(leaving))
            leaving.send_signal(signal.SIGKILL if step % 2 == 0 else signal.SIGTERM)
            gone.append(leaving)
            workers.append(spawn_worker(env, table))
            joining.append(workers[-1])
        time.sleep(STEP)
        stop.set()
        for writer in writers:
            writer.join()
        watcher = ProjectionRunner(store, [Visits(table, PARTITIONS)])
        watcher.wait_for("visits", max(appended), timeout=60)
        for worker in workers:
            if worker in joining:
                joining.remove(ready(worker))
            worker.send_signal(signal.SIGTERM)
        # A stopped worker finishes its batch, gives its leases back and exits.
        assert [worker.wait(timeout=15) for worker in workers] == [0] * WORKERS
        assert [worker.wait(timeout=15) for worker in gone] == [-signal.SIGKILL, 0] * 3
    finally:
        stop.set()
        for worker in workers + gone:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    rows = history(store, table)
    log = store.read_all()
    assert len(appended) > 300
    assert len({record.stream for record in log}) > 1500
    assert max(record.version for record in log) > 10
    assert len(rows) == len(log)  # every event, none twice
    assert sorted((stream, version) for stream, version, *_ in rows) == sorted(
        (record.stream, record.version) for record in log
    )
    seen: dict[str, int] = defaultdict(int)
    for stream, version, _, part, _, _ in rows:
        assert version == seen[stream] + 1  # handled in stream order, without a skip
        seen[stream] = version
        assert part == partition_of(stream, PARTITIONS)
    tokens: dict[int, int] = {}
    owners: dict[tuple[int, int], str] = {}
    for _, _, _, part, owner, token in rows:
        assert token >= tokens.get(part, 0)  # never an older lease after a newer one
        tokens[part] = token
        assert owners.setdefault((part, token), owner) == owner  # a token has one owner
    assert len(set(owners.values())) >= WORKERS + 3  # the joiners got partitions
    assert any(token > 1 for token in tokens.values())  # and partitions changed hands
    store.close()
