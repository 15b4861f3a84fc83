"""Orchestrated sagas completed per second, on SQLite and PostgreSQL.

A saga of four steps whose actions do no work (each returns at once), so
what is measured is tidings: reading the saga's stream, deciding the next
move and appending each outcome with its expected version; six appends (one
commit each) per saga. Side by side, per store:

- the floor: six bare appends of one event each, one commit each, which is
  what the saga's log costs at the least;
- `SagaRunner` (blocking), one saga after another;
- `AsyncSagaRunner`, one after another, and 16 sagas at once (PostgreSQL
  runs them in parallel; SQLite has one writer).

Run: `uv run python -m benchmarks.sagas [--seconds 1.0] [--repeats 3]`.
PostgreSQL is used when `TIDINGS_BENCH_POSTGRES` (default: the test database
at 127.0.0.1) is reachable; each run has a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio

from tidings.codec import Codec
from tidings.messages import Envelope
from tidings.sagas import AsyncSagaRunner, Saga, SagaRunner, SagaStarted, SagaStatus, Step
from tidings.store import AsyncSQLiteStore, SQLiteStore

POSTGRES = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
APPENDS_PER_SAGA = 6  # started, four steps completed, completed


def nothing(context: Any) -> None:
    return None


SAGA = Saga("Bench", [Step(f"s{i}", nothing, nothing) for i in range(4)])
_ids = itertools.count()


def next_id() -> str:
    return f"{uuid.uuid4().hex[:8]}{next(_ids)}"


@dataclass(frozen=True)
class Backend:
    name: str
    open_sync: Callable[[], Any]
    open_async: Callable[[], Any]


def floor_sync(store: Any, n: int) -> float:
    codec = Codec()
    start = perf_counter()
    for _ in range(n):
        stream = f"Floor-{next_id()}"
        for version in range(APPENDS_PER_SAGA):
            event = codec.new_event(Envelope.new(SagaStarted("Floor", {})))
            store.append(stream, [event], version)
    return perf_counter() - start


def saga_sync(store: Any, n: int) -> float:
    runner = SagaRunner(store, [SAGA])
    start = perf_counter()
    for _ in range(n):
        state = runner.start("Bench", next_id(), {"amount": "10"})
        assert state.status is SagaStatus.COMPLETED
    return perf_counter() - start


def saga_async(open_store: Callable[[], Any], n: int, at_once: int) -> float:
    async def main() -> float:
        store = open_store()
        runner = AsyncSagaRunner(store, [SAGA])
        await runner.start("Bench", next_id(), {})  # opens the pool and the schema
        left = iter(range(n))

        async def worker() -> None:
            for _ in left:
                state = await runner.start("Bench", next_id(), {"amount": "10"})
                assert state.status is SagaStatus.COMPLETED

        try:
            start = perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(at_once):
                    tasks.start_soon(worker)
            return perf_counter() - start
        finally:
            await store.aclose()

    return anyio.run(main)


def calibrate(run: Callable[[int], float], seconds: float) -> int:
    """How many sagas one timed run of `run` takes to last about `seconds`."""
    n = 5
    while run(n) < seconds / 4:
        n *= 2
    return max(5, int(n * seconds / max(run(n), 1e-9)))


@contextmanager
def backends() -> Iterator[list[Backend]]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sagas.db"
        found = [
            Backend("SQLite", lambda: SQLiteStore(path), lambda: AsyncSQLiteStore(path)),
        ]
        schema = f"bench_sagas_{uuid.uuid4().hex[:8]}"
        postgres = _postgres(schema)
        if postgres is not None:
            found.append(postgres)
        try:
            yield found
        finally:
            if postgres is not None:
                import psycopg
                from psycopg import sql

                with psycopg.connect(POSTGRES, autocommit=True) as connection:
                    connection.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )


def _postgres(schema: str) -> Backend | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES, connect_timeout=3):
            pass
    except Exception as exc:
        print(f"PostgreSQL left out: {exc}")
        return None
    from tidings.store.postgres import AsyncPostgresStore, PostgresStore

    return Backend(
        "PostgreSQL",
        lambda: PostgresStore(POSTGRES, schema=schema),
        lambda: AsyncPostgresStore(POSTGRES, schema=schema, max_size=16),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with backends() as found:
        for backend in found:
            store = backend.open_sync()
            try:
                opener = backend.open_async
                cases: list[tuple[str, Callable[[int], float]]] = [
                    ("floor: 6 bare appends", functools.partial(floor_sync, store)),
                    ("SagaRunner", functools.partial(saga_sync, store)),
                    ("AsyncSagaRunner", functools.partial(saga_async, opener, at_once=1)),
                    (
                        "AsyncSagaRunner, 16 at once",
                        functools.partial(saga_async, opener, at_once=16),
                    ),
                ]
                print(f"\n{backend.name}: sagas (4 steps, 6 appends) per second")
                sizes = [calibrate(run, args.seconds) for _, run in cases]
                rates: list[list[float]] = [[] for _ in cases]
                # Repeats interleave the cases, so that load from elsewhere falls on all alike.
                for _ in range(args.repeats):
                    for index, (_, run) in enumerate(cases):
                        rates[index].append(sizes[index] / run(sizes[index]))
                floor = statistics.median(rates[0])
                for (name, _), measured in zip(cases, rates, strict=True):
                    median = statistics.median(measured)
                    spread = (max(measured) - min(measured)) / median
                    print(
                        f"  {name:<30} {median:>9,.0f}/s  {median / floor:5.2f}x floor"
                        f"  (spread {spread:.0%})"
                    )
            finally:
                store.close()


if __name__ == "__main__":
    main()
