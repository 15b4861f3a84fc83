"""Scale-out of a partitioned projection over worker processes, on PostgreSQL.

- throughput: the handler waits 1 ms per event (I/O, which one worker does
  not overlap: `concurrency=1`), P = 16; the same log of `--events` events
  processed by 1, 2 and 4 worker processes, printed as ratios to one worker;
- rebalance: with 2 workers running, a third joins: the seconds until every
  worker holds its share (each 5 or 6 of 16); then one is SIGKILLed: the
  seconds until every partition is owned by a live worker again, and until
  each of the 2 left holds 8. Both are bounded by the lease (`--lease`): a
  member's heartbeat runs every third of it, and a killed worker's
  partitions are free once its leases have run out.

Run: `uv run python -m benchmarks.workers [--events N] [--lease S]`
(default 20,000 events, a 2 s lease; TIDINGS_BENCH_PG names the server).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tidings import Codec, Envelope, Event, Worker
from tidings.projections import Projection, ProjectionRunner, handles
from tidings.store.postgres import PostgresStore

DSN = os.environ.get("TIDINGS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PARTITIONS = 16


@dataclass(frozen=True)
class Ticked(Event, type_name="bench.workers.Ticked"):
    n: int


class Slow(Projection[object]):
    """1 ms of waiting per event, as a call to another service would cost."""

    transactional = False
    partitions = PARTITIONS

    def __init__(self, name: str) -> None:
        self.name = name

    def reset(self, tx: object) -> None:
        pass

    @handles
    def ticked(self, event: Ticked, envelope: Envelope[Ticked], tx: None) -> None:
        time.sleep(0.001)


def work(schema: str, name: str, lease: float) -> None:
    """A worker process: runs `Slow(name)` until SIGTERM."""
    store = PostgresStore(DSN, schema=schema)
    worker = Worker(store, projections=[Slow(name)], concurrency=1, poll_interval=0.1, lease=lease)
    worker.prepare()
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print("running", flush=True)
    worker.run()
    store.close()


def spawn(schema: str, name: str, lease: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.workers", "--work", schema, name, "--lease", str(lease)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait()


def holdings(watcher: ProjectionRunner, name: str, alive: set[int]) -> tuple[int, Counter[int]]:
    """How many partitions of `name` no live worker owns, and how many each live one holds."""
    held: Counter[int] = Counter()
    orphans = 0
    for found in watcher.status():
        if found.partition is None or not found.name.startswith(f"{name}#"):
            continue
        pid = int(found.owner.split(":")[1]) if found.owner and found.owner.count(":") >= 2 else 0
        if pid in alive:
            held[pid] += 1
        else:
            orphans += 1
    return orphans, held


def until(check: Callable[[], bool], timeout: float = 120.0) -> float:
    """Seconds until `check` holds, polled every 20 ms."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("the workers did not settle")
        time.sleep(0.02)
    return time.monotonic() - started


def throughput(store: PostgresStore, schema: str, workers: int, last: int, lease: float) -> float:
    """Seconds for `workers` processes to bring a new projection to `last`."""
    name = f"slow{workers}"
    ProjectionRunner(store, [Slow(name)]).pause(name)  # held until every worker is up
    processes = [spawn(schema, name, lease) for _ in range(workers)]
    watcher = ProjectionRunner(store, [Slow(name)])
    try:
        alive = {process.pid for process in processes}
        # Each has joined the members and claimed its share before the clock starts.
        until(
            lambda: (
                holdings(watcher, name, alive)[1] == Counter(dict.fromkeys(alive, 16 // workers))
            )
        )
        started = time.monotonic()
        watcher.resume(name)
        watcher.wait_for(name, last, timeout=600)
        return time.monotonic() - started
    finally:
        stop(processes)


def rebalance(store: PostgresStore, schema: str, lease: float) -> tuple[float, float, float]:
    """Seconds to a fair share after a join, to full ownership and a fair share after a kill."""
    name = "rebalanced"
    watcher = ProjectionRunner(store, [Slow(name)])
    processes = [spawn(schema, name, lease), spawn(schema, name, lease)]
    try:
        alive = {process.pid for process in processes}

        def fair(count: int) -> Callable[[], bool]:
            def check() -> bool:
                orphans, held = holdings(watcher, name, alive)
                share = -(-PARTITIONS // count)
                return orphans == 0 and len(held) == count and max(held.values()) <= share

            return check

        until(fair(2))
        started = time.monotonic()
        processes.append(spawn(schema, name, lease))
        alive.add(processes[-1].pid)
        until(fair(3))
        joined = time.monotonic() - started  # from the start of its process
        killed = processes.pop(0)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        alive.discard(killed.pid)
        started = time.monotonic()
        owned = until(lambda: holdings(watcher, name, alive)[0] == 0)
        balanced = owned + until(fair(2))
        return joined, owned, balanced
    finally:
        stop(processes)


def main(events: int, lease: float) -> None:
    schema = f"bench_workers_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(DSN, schema=schema)
    codec = Codec(Ticked)
    last = 0
    for n in range(0, events, 4):
        batch = [codec.new_event(Envelope.new(Ticked(n + i))) for i in range(4)]
        last = store.append(f"Tick-{n // 4 % 1000}", batch).positions[-1]
    try:
        times = {k: throughput(store, schema, k, last, lease) for k in (1, 2, 4)}
        joined, owned, balanced = rebalance(store, schema, lease)
    finally:
        with store.transaction() as tx:
            tx.connection.execute(f"DROP SCHEMA {schema} CASCADE")
        store.close()
    print(f"workers: {events} events, handler 1 ms, P={PARTITIONS}, concurrency 1, PostgreSQL")
    for k, seconds in times.items():
        print(
            f"  {k} worker(s): {seconds:6.2f} s  {events / seconds:7.0f} events/s"
            f"  {times[1] / seconds:4.2f}x"
        )
    print(f"rebalance, lease {lease:g} s:")
    print(f"  a third worker joins 2: {joined:5.2f} s until each holds 5 or 6 of 16")
    print(f"  one of 3 is SIGKILLed:  {owned:5.2f} s until every partition is owned again,")
    print(f"                          {balanced:5.2f} s until each of 2 holds 8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events in the log")
    parser.add_argument("--lease", type=float, default=2.0, help="the workers' lease, seconds")
    parser.add_argument("--work", nargs=2, metavar=("SCHEMA", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        work(args.work[0], args.work[1], args.lease)
    else:
        main(args.events, args.lease)
