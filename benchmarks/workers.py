"""Throughput of a partitioned projection with 1, 2 and 4 worker processes, on PostgreSQL.

The handler sleeps 1 ms per event (work that does not overlap within one
worker: `concurrency=1`); P = 16. Printed as ratios to one worker.
`python -m benchmarks.workers [EVENTS]` (default 4,000; TIDINGS_BENCH_PG names the server).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tidings import Codec, Envelope, Event, Worker
from tidings.projections import Projection, ProjectionRunner, handles
from tidings.store.postgres import PostgresStore

DSN = os.environ.get("TIDINGS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PARTITIONS = 16


@dataclass(frozen=True)
class Ticked(Event, type_name="bench.workers.Ticked"):
    n: int


class Slow(Projection):
    transactional = False
    partitions = PARTITIONS

    def __init__(self, name: str) -> None:
        self.name = name

    def reset(self, tx: Any) -> None:
        pass

    @handles
    def ticked(self, event: Ticked, envelope: Envelope[Ticked], tx: Any) -> None:
        time.sleep(0.001)


def work(schema: str, name: str) -> None:
    store = PostgresStore(DSN, schema=schema)
    worker = Worker(store, projections=[Slow(name)], concurrency=1, poll_interval=0.1, lease=2.0)
    worker.prepare()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print("running", flush=True)
    worker.run()


def measure(store: PostgresStore, schema: str, workers: int, last: int) -> float:
    name = f"slow{workers}"
    ProjectionRunner(store, [Slow(name)]).pause(name)  # held until every worker is up
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.workers", "--work", schema, name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"
    time.sleep(1.0)  # each has joined the members and claimed its share
    watcher = ProjectionRunner(store, [Slow(name)])
    started = time.monotonic()
    watcher.resume(name)
    watcher.wait_for(name, last, timeout=600)
    elapsed = time.monotonic() - started
    for process in processes:
        process.terminate()
        process.wait()
    return elapsed


def main(events: int) -> None:
    schema = f"bench_workers_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(DSN, schema=schema)
    codec = Codec(Ticked)
    last = 0
    for n in range(0, events, 4):
        batch = [codec.new_event(Envelope.new(Ticked(n + i))) for i in range(4)]
        last = store.append(f"Tick-{n // 4 % 1000}", batch).positions[-1]
    try:
        times = {k: measure(store, schema, k, last) for k in (1, 2, 4)}
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--work"]:
        work(sys.argv[2], sys.argv[3])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
