"""SQLite across processes: how soon a wait sees another process's commit, and who gets the lock.

Two figures, each with the mechanism on and off in one run, side by side:

- wait: process A runs a projection and appends one event at a time; process B
  calls `wait_for` on the position A's append returned, at once. A's handler
  takes 5 ms, so B is waiting when A's checkpoint commits; the latency runs
  from then (the handler's end, just before that commit) to B's `wait_for`
  returning (one clock: `CLOCK_MONOTONIC` is the machine's), p50 and p99 over
  `--samples` appends a few milliseconds apart.
  B's store either watches `PRAGMA data_version` (every 2 ms, the default)
  or does not (`watch_interval=None`), when `wait_for` looks again every 50 ms.
  Samples of both alternate.
- turns: this process's runner catches up a backlog of `--backlog` events
  with a handler taking 0.4 ms each, while process A appends every 20 ms; the
  time each of A's appends waited for the write lock, p50, p99 and max, and
  the runner's catch-up rate (the median of `--repeats` runs of each, the two
  kinds alternating). With write turns (the SQLite store's default) a
  catch-up transaction lasts about 50 ms and leaves the lock free 3 ms after;
  without (`write_turn = None`), it runs batches of 500 back to back.

Run: `uv run python -m benchmarks.waits [--samples 200] [--backlog 3000]`.
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tidings import Codec, Envelope, Event, ReadModelTransaction
from tidings.projections import Projection, ProjectionRunner, handles
from tidings.store import NewEvent, SQLiteStore


@dataclass(frozen=True)
class Ticked(Event, type_name="bench.Ticked"):
    n: int


CODEC = Codec(Ticked)


def tick(n: int) -> NewEvent:
    return CODEC.new_event(Envelope.new(Ticked(n)))


class Ticks(Projection):
    """One row per event; `cost` seconds of work inside the write transaction for each.

    `handled` is told each event's position and when its handling ended.
    """

    name = "ticks"

    def __init__(
        self, cost: float = 0.0, handled: Callable[[int, float], None] | None = None
    ) -> None:
        self.cost = cost
        self.handled = handled

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS ticks (position BIGINT PRIMARY KEY)")

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM ticks")

    @handles
    def ticked(self, event: Ticked, envelope: Envelope[Ticked], tx: ReadModelTransaction) -> None:
        if self.cost:
            until = time.perf_counter() + self.cost
            while time.perf_counter() < until:
                pass
        tx.execute("INSERT INTO ticks (position) VALUES (?)", (envelope.position,))
        if self.handled is not None and envelope.position is not None:
            self.handled(envelope.position, now())


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# Process A.


def appender(path: str, runs: bool) -> None:
    """Append one event per line on stdin; print its position and when the commit returned.

    With `runs`, this process also runs the projection (5 ms an event) and
    then prints, on a line of its own, when it handled the event appended.
    """
    store = SQLiteStore(path, durable=False, timeout=30)
    handled: queue.Queue[tuple[int, float]] = queue.Queue()
    runner = ProjectionRunner(
        store, [Ticks(0.005, lambda *done: handled.put(done))], poll_interval=1.0
    )
    try:
        if runs:
            with runner.running():
                _append_lines(store, handled)
        else:
            _append_lines(store, None)
    finally:
        store.close()


def _append_lines(store: SQLiteStore, handled: queue.Queue[tuple[int, float]] | None) -> None:
    print("ready", flush=True)
    for n, _ in enumerate(sys.stdin):
        asked = now()
        position = store.append("Tick-a", [tick(n)]).positions[-1]
        print(position, asked, now(), flush=True)
        while handled is not None:
            reached, at = handled.get(timeout=30)
            if reached == position:
                print(at, flush=True)
                break


class Appender:
    """Process A, from this side."""

    def __init__(self, path: Path, runs: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.waits", "--appender", str(path)]
            + (["--runs"] if runs else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stdin: IO[str] = _stream(self.process.stdin)
        self.stdout: IO[str] = _stream(self.process.stdout)
        if self.stdout.readline().strip() != "ready":
            raise SystemExit("the appending process did not start")

    def append(self) -> tuple[int, float, float]:
        """Its position, when the append was asked for and when its commit returned."""
        self.stdin.write("go\n")
        self.stdin.flush()
        position, asked, done = self.stdout.readline().split()
        return int(position), float(asked), float(done)

    def handled(self) -> float:
        """When A's runner handled the event last appended."""
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(30)
        self.stdout.close()


def _stream(stream: IO[str] | None) -> IO[str]:
    assert stream is not None
    return stream


# The figures.


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def waits(folder: Path, samples: int) -> dict[str, list[float]]:
    """Latency of B's `wait_for` after A's commit, B watching `data_version` or polling."""
    path = folder / "waits.db"
    stores = {
        "data_version": SQLiteStore(path, durable=False),
        "poll only": SQLiteStore(path, durable=False, watch_interval=None),
    }
    runners = {mode: ProjectionRunner(store, [Ticks()]) for mode, store in stores.items()}
    runners["poll only"].prepare()
    a = Appender(path, runs=True)
    found: dict[str, list[float]] = {mode: [] for mode in stores}
    try:
        for _ in range(samples):
            for mode, runner in runners.items():
                position, _, _ = a.append()
                runner.wait_for("ticks", position, timeout=10)
                returned = now()
                found[mode].append(returned - a.handled())
                time.sleep(random.uniform(0.002, 0.02))
    finally:
        a.close()
        for store in stores.values():
            store.close()
    return found


@dataclass
class Turns:
    writer_waits: list[float]
    rate: float


def turns(folder: Path, backlog: int, turned: bool) -> Turns:
    """A's append waits while this process's runner catches up `backlog` events."""
    path = folder / f"turns-{uuid.uuid4().hex[:8]}.db"
    store = SQLiteStore(path, durable=False, timeout=30)
    if not turned:
        store.write_turn = None  # batches of `batch_size`, back to back
    store.append("Tick-b", [tick(n) for n in range(backlog)])
    a = Appender(path, runs=False)
    runner = ProjectionRunner(store, [Ticks(cost=0.0004)], poll_interval=0.05)
    writer_waits: list[float] = []
    stop = threading.Event()

    def keep_appending() -> None:
        while not stop.wait(0.02):
            _, asked, done = a.append()
            writer_waits.append(done - asked)

    try:
        started = time.perf_counter()
        with runner.running():
            writer = threading.Thread(target=keep_appending)
            writer.start()
            try:
                runner.wait_for("ticks", backlog, timeout=120)
            finally:
                stop.set()
                writer.join()
        elapsed = time.perf_counter() - started
    finally:
        a.close()
        store.close()
    return Turns(writer_waits, backlog / elapsed)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--appender", help=argparse.SUPPRESS)
    parser.add_argument("--runs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.appender:
        appender(args.appender, args.runs)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        found = waits(Path(folder), args.samples)
        watched, polled = found["data_version"], found["poll only"]
        print(f"\nwait_for in B after A's commit, {args.samples} samples each:\n")
        print(f"{'':14}{'p50':>11}{'p99':>11}")
        for mode, values in found.items():
            print(f"{mode:14}{ms(percentile(values, 0.5))}{ms(percentile(values, 0.99))}")
        print(
            f"{'poll / watch':14}{percentile(polled, 0.5) / percentile(watched, 0.5):10.1f}x"
            f"{percentile(polled, 0.99) / percentile(watched, 0.99):10.1f}x"
        )
        runs: dict[bool, list[Turns]] = {True: [], False: []}
        for _ in range(args.repeats):
            for turned in (True, False):
                runs[turned].append(turns(Path(folder), args.backlog, turned))
        with_turns, without = (
            Turns(
                [wait for run in runs[turned] for wait in run.writer_waits],
                statistics.median(run.rate for run in runs[turned]),
            )
            for turned in (True, False)
        )
        print(f"\nA's appends while B's runner catches up {args.backlog} events (0.4 ms each):\n")
        print(f"{'':16}{'wait p50':>11}{'wait p99':>11}{'wait max':>11}{'catch-up':>14}")
        for name, result in (("write turns", with_turns), ("back to back", without)):
            w = result.writer_waits
            print(
                f"{name:16}{ms(statistics.median(w))}{ms(percentile(w, 0.99))}{ms(max(w))}"
                f"{result.rate:9.0f} ev/s"
            )
        back, taking_turns = without.writer_waits, with_turns.writer_waits
        print(
            f"{'back / turns':16}"
            f"{statistics.median(back) / statistics.median(taking_turns):10.1f}x"
            f"{percentile(back, 0.99) / percentile(taking_turns, 0.99):10.1f}x"
            f"{max(back) / max(taking_turns):10.1f}x"
            f"{without.rate / with_turns.rate:13.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
