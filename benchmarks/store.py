"""The event log: appends, reads and aggregate loads per second, against the raw driver and a peer.

Measured side by side, in one run, each case on one backend for every contender:

- **raw**: the driver running by hand the same SQL the tidings store runs, on
  the same schema and at the same durability (SQLite `synchronous=FULL`), and
  for reads decoding each event's data with a msgspec decoder, nothing more;
- **eventsourcing** (the bench group), its SQLite and PostgreSQL application
  recorders, with its mapper to make typed events, and its `Application`
  repository to load aggregates;
- **tidings**: `SQLiteStore` / `PostgresStore`, the codec for typed events,
  and a `UnitOfWork` repository for aggregates.

Cases: one event per commit and ten per commit (SQLite), beside a bare
one-row INSERT committed at the same durability; sixteen threads each
committing one event at a time (SQLite: the store's group commit against a
connection per thread); eight threads each committing one event at a time
(PostgreSQL, beside eight connections committing one-row INSERTs); reading one 10,000-event stream
into typed events, reading 100,000 events from `$all` into typed events (in
pages of 1,000), and loading an aggregate of 1,000 events without and with a
snapshot. Every contender writes and reads the same number of events.

Run: `uv run python -m benchmarks.store [--repeats 5] [--scale 1.0]` (under
a minute); `--scale` multiplies the sizes, `--case CASE` runs one case alone,
`--profile CASE` profiles the tidings contender of one case instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from time import perf_counter
from typing import Any, ClassVar

import msgspec

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate as EsAggregate
    from eventsourcing.domain import event as es_event
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
except ImportError as exc:  # the peers are a dependency group of their own
    raise SystemExit(f"{exc}: install the peers with `uv sync --all-extras --group bench`") from exc

from tidings import Codec, Event, EventSourced, UnitOfWork, applies
from tidings.messages import new_id
from tidings.store import NewEvent, SQLiteStore
from tidings.store.postgres import PostgresStore
from tidings.store.postgres_sql import Statements, append_params

POSTGRES = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONTENDERS = ("raw", "eventsourcing", "tidings")
PAGE = 1000  # events per page when reading $all


@dataclass(frozen=True)
class Counted(Event, type_name="bench.Counted"):
    amount: int


class Tally(EventSourced):
    total: int
    count: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0
        self.count = 0

    def add(self, amount: int) -> None:
        self.record(Counted(amount))

    @applies
    def _counted(self, event: Counted) -> None:
        self.total += event.amount
        self.count += 1


class SnapshottedTally(Tally):
    snapshot_every: ClassVar[int | None] = 1000


class EsTally(EsAggregate):
    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    @es_event("Counted")
    def add(self, amount: int) -> None:
        self.total += amount
        self.count += 1


class EsTallies(Application[uuid.UUID]):
    is_snapshotting_enabled = True


_decoder = msgspec.json.Decoder(Counted)
_names = itertools.count()  # a fresh stream name for every run of every case
_codec = Codec(Counted)


# Inputs, made before any timing


def new_events(count: int) -> list[NewEvent]:
    """Events as a unit of work makes them: time-ordered ids (UUIDv7), one correlation."""
    now = datetime.now(UTC)
    correlation = new_id()
    return [
        NewEvent(new_id(), "bench.Counted", 1, b'{"amount":%d}' % n, correlation, None, now)
        for n in range(count)
    ]


def stored_events(mapper: Any, stream: uuid.UUID, first_version: int, count: int) -> list[Any]:
    """Events as eventsourcing stores them: its own aggregate's events through its mapper."""
    tally = EsTally()
    for n in range(count):
        tally.add(n)
    template = [mapper.to_stored_event(e) for e in tally.collect_events()[1:]]
    return [
        StoredEvent(stream, first_version + i, template[i].topic, template[i].state)
        for i in range(count)
    ]


# The raw driver: the tidings SQLite store's statements, by hand

_RAW_INSERT = (
    "INSERT INTO tidings_events (position, stream, category, version, event_id, type,"
    " schema_version, data, correlation_id, causation_id, occurred_at, headers)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RAW_NEW_STREAM = "INSERT INTO tidings_streams (name, category) VALUES (?, ?)"
_RAW_COLUMNS = (
    "position, stream, version, event_id, type, schema_version, data,"
    " correlation_id, causation_id, occurred_at, headers"
)


_PLAIN_INSERT = "INSERT INTO bench_rows (data) VALUES (?)"


def raw_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def raw_append(
    connection: sqlite3.Connection, stream: str, events: Sequence[NewEvent], expected: int
) -> None:
    connection.execute("BEGIN IMMEDIATE")
    ids = [e.event_id.bytes for e in events]
    placeholders = ", ".join("?" * len(ids))
    connection.execute(
        f"SELECT {_RAW_COLUMNS} FROM tidings_events WHERE event_id IN ({placeholders})", ids
    ).fetchall()
    row = connection.execute(
        "SELECT (SELECT max(version) FROM tidings_events WHERE stream = name), deleted"
        " FROM tidings_streams WHERE name = ?",
        (stream,),
    ).fetchone()
    last = 0 if row is None else row[0]
    if last != expected:
        raise AssertionError(f"{stream}: expected {expected}, found {last}")
    (top,) = connection.execute("SELECT coalesce(max(position), 0) FROM tidings_events").fetchone()
    category = stream.partition("-")[0]
    connection.executemany(
        _RAW_INSERT,
        [
            (
                top + i,
                stream,
                category,
                last + i,
                e.event_id.bytes,
                e.type,
                e.schema_version,
                e.data,
                e.correlation_id.bytes,
                None,
                e.occurred_at.isoformat(),
                e.headers,
            )
            for i, e in enumerate(events, start=1)
        ],
    )
    if row is None:
        connection.execute(_RAW_NEW_STREAM, (stream, category))
    connection.execute("COMMIT")


def raw_read_stream(connection: sqlite3.Connection, stream: str) -> list[Counted]:
    rows = connection.execute(
        f"SELECT {_RAW_COLUMNS} FROM tidings_events WHERE stream = ? AND version >= 1"
        " AND version >= (SELECT first_version FROM tidings_streams WHERE name = ?)"
        " ORDER BY version",
        (stream, stream),
    )
    return [_decoder.decode(row[6]) for row in rows]


def raw_read_all(connection: sqlite3.Connection) -> int:
    after, count = 0, 0
    while True:
        rows = connection.execute(
            f"SELECT {_RAW_COLUMNS} FROM tidings_events WHERE position > ?"
            " ORDER BY position LIMIT ?",
            (after, PAGE),
        ).fetchall()
        if not rows:
            return count
        events = [_decoder.decode(row[6]) for row in rows]
        count += len(events)
        after = rows[-1][0]


# Cases


Run = Callable[[], int]
"""Does the workload once; returns how many events (or loads) it did."""


@dataclass
class Case:
    """One workload: per contender, a function that prepares its inputs and returns its run.

    Only the run is timed: inputs (event ids, encoded events) are made before.
    """

    key: str
    title: str
    unit: str
    runs: dict[str, Callable[[], Run]]


def ready(run: Run) -> Callable[[], Run]:
    """For a run with no inputs to prepare."""
    return lambda: run


@dataclass
class Sizes:
    single_commits: int
    batch_commits: int
    writer_commits: int
    sqlite_writer_commits: int
    stream_events: int
    all_events: int
    aggregate_events: int
    aggregate_loads: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        def size(n: int) -> int:
            return max(1, round(n * scale))

        return cls(
            single_commits=size(500),
            batch_commits=size(300),
            writer_commits=size(150),
            sqlite_writer_commits=size(40),
            stream_events=size(10_000),
            all_events=size(100_000),
            aggregate_events=1000,
            aggregate_loads=size(30),
        )


class Bench:
    """The stores of every contender, in a temporary directory and fresh PostgreSQL schemas."""

    def __init__(self, directory: Path, sizes: Sizes, stack: ExitStack) -> None:
        self.sizes = sizes
        self.dir = directory
        self.stack = stack
        schema_maker = SQLiteStore(directory / "raw.db")
        schema_maker.read_all()  # the same schema, made by the store
        schema_maker.close()
        self.raw = raw_connection(directory / "raw.db")
        self.raw.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        stack.callback(self.raw.close)
        self.tidings = SQLiteStore(directory / "tidings.db")
        stack.callback(self.tidings.close)
        self.es = EsTallies(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(directory / "eventsourcing.db"),
            }
        )
        stack.callback(self.es.close)
        # eventsourcing sets no synchronous pragma: its connections get SQLite's default.
        with sqlite3.connect(directory / "eventsourcing.db") as probe:
            self.es_synchronous = probe.execute("PRAGMA synchronous").fetchone()[0]
        probe.close()

    # Appends on SQLite

    def appends(self, key: str, per_commit: int, commits: int) -> Case:

        # Streams of ten commits each, every commit at its exact expected version.
        def tidings() -> Run:
            name = f"T{next(_names)}"
            batches = [new_events(per_commit) for _ in range(commits)]

            def run() -> int:
                for i, batch in enumerate(batches):
                    self.tidings.append(f"{name}-{i // 10}", batch, (i % 10) * per_commit)
                return commits * per_commit

            return run

        def raw() -> Run:
            name = f"R{next(_names)}"
            batches = [new_events(per_commit) for _ in range(commits)]

            def run() -> int:
                for i, batch in enumerate(batches):
                    raw_append(self.raw, f"{name}-{i // 10}", batch, (i % 10) * per_commit)
                return commits * per_commit

            return run

        def eventsourcing() -> Run:
            streams = [uuid.uuid4() for _ in range(commits // 10 + 1)]
            batches = [
                stored_events(
                    self.es.mapper, streams[i // 10], (i % 10) * per_commit + 1, per_commit
                )
                for i in range(commits)
            ]

            def run() -> int:
                for batch in batches:
                    self.es.recorder.insert_events(batch)
                return commits * per_commit

            return run

        # The physical bound of one event per commit: a one-row INSERT, committed durably.
        def plain_insert() -> Run:
            payloads = [new_events(1)[0].data for _ in range(commits)]

            def run() -> int:
                for payload in payloads:
                    self.raw.execute(_PLAIN_INSERT, (payload,))
                return commits

            return run

        runs: dict[str, Callable[[], Run]] = {"insert": plain_insert} if per_commit == 1 else {}
        runs |= {"raw": raw, "eventsourcing": eventsourcing, "tidings": tidings}
        return Case(
            key,
            f"Append, {per_commit} event{'s' if per_commit > 1 else ''} per commit (SQLite)",
            "events/s",
            runs,
        )

    # Concurrent writers on SQLite

    def sqlite_writers(self, threads: int) -> Case:
        commits = self.sizes.sqlite_writer_commits
        # By hand, each thread has a connection of its own and SQLite's busy handler orders them.
        raw_connections = [raw_connection(self.dir / "raw.db") for _ in range(threads)]
        for connection in raw_connections:
            self.stack.callback(connection.close)

        # Each thread writes streams of its own, ten commits each at exact expected versions.
        def tidings(index: int, name: str) -> Callable[[], None]:
            batches = [new_events(1) for _ in range(commits)]

            def work() -> None:
                for i, batch in enumerate(batches):
                    self.tidings.append(f"{name}{index}-{i // 10}", batch, i % 10)

            return work

        def raw(index: int, name: str) -> Callable[[], None]:
            batches = [new_events(1) for _ in range(commits)]
            connection = raw_connections[index]

            def work() -> None:
                for i, batch in enumerate(batches):
                    raw_append(connection, f"{name}{index}-{i // 10}", batch, i % 10)

            return work

        def eventsourcing(index: int, name: str) -> Callable[[], None]:
            streams = [uuid.uuid4() for _ in range(commits // 10 + 1)]
            batches = [
                stored_events(self.es.mapper, streams[i // 10], i % 10 + 1, 1)
                for i in range(commits)
            ]

            def work() -> None:
                for batch in batches:
                    self.es.recorder.insert_events(batch)

            return work

        return Case(
            "sqlite-writers",
            f"{threads} threads, each committing 1 event at a time (SQLite)",
            "events/s",
            {
                "raw": concurrently(raw, threads, commits),
                "eventsourcing": concurrently(eventsourcing, threads, commits),
                "tidings": concurrently(tidings, threads, commits),
            },
        )

    # Reads on SQLite

    def fill(self) -> tuple[str, uuid.UUID]:
        """Write the read cases' data: one long stream, then streams of 1,000 up to the total."""
        sizes = self.sizes
        streams = [("Long-1", sizes.stream_events)]
        rest = max(0, sizes.all_events - sizes.stream_events)
        streams += [(f"Fill-{n}", 1000) for n in range(rest // 1000)]
        long_es = uuid.uuid4()
        for name, count in streams:
            es_id = long_es if name == "Long-1" else uuid.uuid4()
            for start in range(0, count, 1000):
                batch = new_events(min(1000, count - start))
                self.tidings.append(name, batch, start)
                raw_append(self.raw, name, batch, start)
                self.es.recorder.insert_events(
                    stored_events(self.es.mapper, es_id, start + 1, len(batch))
                )
        return "Long-1", long_es

    def reads(self, stream: str, es_stream: uuid.UUID) -> list[Case]:
        mapper, recorder = self.es.mapper, self.es.recorder

        def tidings_stream() -> int:
            records = self.tidings.read_stream(stream)
            return len([_codec.decode(r.type, r.schema_version, r.data) for r in records])

        def es_stream_read() -> int:
            return len([mapper.to_domain_event(s) for s in recorder.select_events(es_stream)])

        def tidings_all() -> int:
            after, count = 0, 0
            while page := self.tidings.read_all(after=after, limit=PAGE):
                count += len([_codec.decode(r.type, r.schema_version, r.data) for r in page])
                after = page[-1].position
            return count

        def es_all() -> int:
            start, count = 1, 0
            while page := recorder.select_notifications(start, PAGE):
                count += len([mapper.to_domain_event(n) for n in page])
                start = page[-1].id + 1
            return count

        return [
            Case(
                "read-stream",
                f"Read one {self.sizes.stream_events:,}-event stream into typed events (SQLite)",
                "events/s",
                {
                    "raw": ready(lambda: len(raw_read_stream(self.raw, stream))),
                    "eventsourcing": ready(es_stream_read),
                    "tidings": ready(tidings_stream),
                },
            ),
            Case(
                "read-all",
                f"Read {self.sizes.all_events:,} events from $all into typed events (SQLite)",
                "events/s",
                {
                    "raw": ready(lambda: raw_read_all(self.raw)),
                    "eventsourcing": ready(es_all),
                    "tidings": ready(tidings_all),
                },
            ),
        ]

    # Aggregates on SQLite

    def aggregates(self) -> list[Case]:
        loads, size = self.sizes.aggregate_loads, self.sizes.aggregate_events
        for kind in (Tally, SnapshottedTally):
            uow = UnitOfWork(self.tidings)
            with uow:
                tally = kind("a1")
                for n in range(size):
                    tally.add(n)
                uow.repository(kind).add(tally)
                uow.commit()
        assert self.tidings.read_snapshot("SnapshottedTally-a1") is not None
        es_ids = []
        for snapshot in (False, True):
            es_tally = EsTally()
            for n in range(size - 1):  # its creation is an event too
                es_tally.add(n)
            self.es.save(es_tally)
            if snapshot:
                self.es.take_snapshot(es_tally.id)
            es_ids.append(es_tally.id)
        raw_stream = "RawTally-a1"
        raw_append(self.raw, raw_stream, new_events(size), 0)

        def tidings(kind: type[Tally]) -> Callable[[], int]:
            def load() -> int:
                for _ in range(loads):
                    uow = UnitOfWork(self.tidings)
                    with uow:
                        loaded = uow.repository(kind).get("a1")
                    assert loaded is not None
                    assert loaded.count == size
                return loads

            return load

        def eventsourcing(es_id: uuid.UUID) -> Callable[[], int]:
            def load() -> int:
                for _ in range(loads):
                    loaded: EsTally = self.es.repository.get(es_id)
                    assert loaded.version == size
                return loads

            return load

        def raw() -> int:
            for _ in range(loads):
                tally = Tally("a1")
                for counted in raw_read_stream(self.raw, raw_stream):
                    tally.total += counted.amount
                    tally.count += 1
                assert tally.count == size
            return loads

        return [
            Case(
                "load",
                f"Load an aggregate of {size:,} events, no snapshot (SQLite)",
                "loads/s",
                {
                    "raw": ready(raw),
                    "eventsourcing": ready(eventsourcing(es_ids[0])),
                    "tidings": ready(tidings(Tally)),
                },
            ),
            Case(
                "load-snapshot",
                f"Load an aggregate of {size:,} events from a snapshot at {size:,} (SQLite)",
                "loads/s",
                {
                    "eventsourcing": ready(eventsourcing(es_ids[1])),
                    "tidings": ready(tidings(SnapshottedTally)),
                },
            ),
        ]

    # Concurrent writers on PostgreSQL

    def writers(self, threads: int) -> Case:
        import psycopg
        from psycopg import sql

        commits = self.sizes.writer_commits
        schemas = {name: f"bench_{name}_{uuid.uuid4().hex[:8]}" for name in CONTENDERS}
        admin = psycopg.connect(POSTGRES, autocommit=True)
        self.stack.callback(admin.close)
        for schema in schemas.values():
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            self.stack.callback(
                admin.execute,
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)),
            )
        store = PostgresStore(
            POSTGRES, schema=schemas["tidings"], min_size=threads, max_size=threads
        )
        self.stack.callback(store.close)
        store.stream_version("Warm-1")
        raw_store = PostgresStore(POSTGRES, schema=schemas["raw"])
        raw_store.stream_version("Warm-1")  # the store makes the schema; raw writes by hand
        raw_store.close()
        statements = Statements.for_schema(schemas["raw"])
        raw_connections = [psycopg.connect(POSTGRES, autocommit=True) for _ in range(threads)]
        for connection in raw_connections:
            self.stack.callback(connection.close)
        # The physical bound: one-row INSERTs committed from as many connections.
        insert_table = sql.SQL("{}.rows").format(sql.Identifier(schemas["raw"]))
        admin.execute(
            sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, data bytea NOT NULL)").format(
                insert_table
            )
        )
        insert = sql.SQL("INSERT INTO {} (data) VALUES (%s)").format(insert_table)
        datastore = PostgresDatastore(
            dbname="test",
            host="127.0.0.1",
            port=5432,
            user="postgres",
            password="",
            schema=schemas["eventsourcing"],
            pool_size=threads,
        )
        recorder = PostgresApplicationRecorder(datastore)
        recorder.create_table()
        self.stack.callback(datastore.close)

        # Each thread writes streams of its own, ten commits each at exact expected versions.
        def tidings(index: int, name: str) -> Callable[[], None]:
            batches = [new_events(1) for _ in range(commits)]

            def work() -> None:
                for i, batch in enumerate(batches):
                    store.append(f"{name}{index}-{i // 10}", batch, i % 10)

            return work

        def raw(index: int, name: str) -> Callable[[], None]:
            batches = [new_events(1) for _ in range(commits)]
            connection = raw_connections[index]

            def work() -> None:
                for i, batch in enumerate(batches):
                    params = append_params(f"{name}{index}-{i // 10}", batch, i % 10, 0)
                    row = connection.execute(statements.append, params, binary=True).fetchone()
                    assert row is not None
                    assert row[0] == "appended", row

            return work

        def plain_insert(index: int, name: str) -> Callable[[], None]:
            payloads = [batch[0].data for batch in (new_events(1) for _ in range(commits))]
            connection = raw_connections[index]

            def work() -> None:
                for payload in payloads:
                    connection.execute(insert, (payload,))

            return work

        def eventsourcing(index: int, name: str) -> Callable[[], None]:
            streams = [uuid.uuid4() for _ in range(commits // 10 + 1)]
            batches = [
                stored_events(self.es.mapper, streams[i // 10], i % 10 + 1, 1)
                for i in range(commits)
            ]

            def work() -> None:
                for batch in batches:
                    recorder.insert_events(batch)

            return work

        return Case(
            "writers",
            f"{threads} threads, each committing 1 event at a time (PostgreSQL)",
            "events/s",
            {
                "insert": concurrently(plain_insert, threads, commits),
                "raw": concurrently(raw, threads, commits),
                "eventsourcing": concurrently(eventsourcing, threads, commits),
                "tidings": concurrently(tidings, threads, commits),
            },
        )


def concurrently(
    make: Callable[[int, str], Callable[[], None]], threads: int, commits: int
) -> Callable[[], Run]:
    """A run of `threads` threads, the work of each made by `make(index, stream prefix)`."""

    def prepare() -> Run:
        name = f"W{next(_names)}x"
        work = [make(i, name) for i in range(threads)]
        return lambda: run_threads(work) * commits

    return prepare


def run_threads(work: list[Callable[[], None]]) -> int:
    """Run each function in a thread of its own, all released together; how many ran."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def body(fn: Callable[[], None]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(fn,)) for fn in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return len(work)


# Timing


@dataclass
class Result:
    case: Case
    rates: dict[str, list[float]]

    def rate(self, contender: str) -> float:
        return statistics.median(self.rates[contender])

    def spread(self, contender: str) -> float:
        rates = self.rates[contender]
        return (max(rates) - min(rates)) / self.rate(contender)


def timed(prepare: Callable[[], Run]) -> float:
    """The rate of one run: its count over the time it took, inputs made beforehand."""
    run = prepare()
    gc.collect()
    start = perf_counter()
    count = run()
    return count / (perf_counter() - start)


def measure(case: Case, repeats: int) -> Result:
    """Rates of every contender, runs interleaved so that noise falls on all alike."""
    for prepare in case.runs.values():  # warm up
        prepare()()
    rates: dict[str, list[float]] = {key: [] for key in case.runs}
    for _ in range(repeats):
        for key, prepare in case.runs.items():
            rates[key].append(timed(prepare))
    return Result(case, rates)


# Report


NAMES = {
    "insert": "plain one-row INSERT commits",
    "raw": "raw driver (same SQL) + msgspec",
    "eventsourcing": f"eventsourcing {version('eventsourcing')}",
    "tidings": "tidings",
}


REFERENCES = ("insert", "raw", "eventsourcing")


def table(result: Result) -> list[str]:
    references = [key for key in REFERENCES if key in result.case.runs]
    header = ["", result.case.unit, *(f"vs {key}" for key in references), "spread"]
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for key in result.case.runs:
        cells = [NAMES[key], f"{result.rate(key):,.0f}"]
        for reference in references:
            cells.append(f"{result.rate(key) / result.rate(reference):.2f}x")
        cells.append(f"{result.spread(key):.0%}")
        rows.append(cells)
    return ["| " + " | ".join(row) + " |" for row in rows]


AIMS: dict[str, dict[str, float]] = {
    # case: the minimum ratio of tidings to each reference
    "append-1": {"insert": 0.9, "raw": 0.8, "eventsourcing": 1.5},
    "append-10": {"raw": 0.8, "eventsourcing": 2.0},
    "sqlite-writers": {"eventsourcing": 5.0},
    "writers": {"insert": 0.8, "eventsourcing": 5.0},
    "read-stream": {"raw": 0.5, "eventsourcing": 2.0},
    "read-all": {"raw": 0.5, "eventsourcing": 2.0},
}


def aims(results: Sequence[Result]) -> list[str]:
    lines = []
    for result in results:
        wanted = AIMS.get(result.case.key)
        if wanted is None:
            continue
        ours = result.rate("tidings")
        parts = []
        for reference, minimum in wanted.items():
            ratio = ours / result.rate(reference)
            verdict = "met" if ratio >= minimum else "MISSED"
            parts.append(f"{ratio:.2f}x {reference} (aim {minimum}x): {verdict}")
        lines.append(f"- {result.case.title}: " + "; ".join(parts))
    return lines


def describe_machine() -> str:
    return (
        f"{date.today().isoformat()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"SQLite {sqlite3.sqlite_version}"
    )


@contextmanager
def bench(sizes: Sizes) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        yield Bench(Path(directory), sizes, stack)


def cases(setup: Bench, only: str | None = None) -> Iterator[Case]:
    sizes = setup.sizes
    wanted = (lambda key: True) if only is None else (lambda key: key == only)
    if wanted("append-1"):
        yield setup.appends("append-1", 1, sizes.single_commits)
    if wanted("append-10"):
        yield setup.appends("append-10", 10, sizes.batch_commits)
    if wanted("sqlite-writers"):
        yield setup.sqlite_writers(16)
    if wanted("writers"):
        yield setup.writers(8)
    if wanted("read-stream") or wanted("read-all"):
        stream, es_stream = setup.fill()
        for case in setup.reads(stream, es_stream):
            if wanted(case.key):
                yield case
    if wanted("load") or wanted("load-snapshot"):
        for case in setup.aggregates():
            if wanted(case.key):
                yield case


def run_benchmark(repeats: int, scale: float, only: str | None) -> None:
    started = perf_counter()
    results = []
    with bench(Sizes.scaled(scale)) as setup:
        synchronous = setup.es_synchronous
        for case in cases(setup, only):
            results.append(measure(case, repeats))
    print(f"The event log, median of {repeats} runs: {describe_machine()}")
    print(
        "(SQLite: WAL, synchronous=FULL for raw and tidings; eventsourcing's connections "
        f"report synchronous={synchronous}, 2 being FULL; spread = (max - min) / median)"
    )
    for result in results:
        print(f"\n{result.case.title}\n")
        print("\n".join(table(result)))
    print("\nAims (tidings):\n")
    print("\n".join(aims(results)))
    print(f"\nWhole run: {perf_counter() - started:.0f} s")


def profile(key: str, scale: float) -> None:
    with bench(Sizes.scaled(scale)) as setup:
        chosen = list(cases(setup, key))
        if not chosen:
            raise SystemExit(
                f"no case {key!r}; choose one of {', '.join(AIMS)}, load, load-snapshot"
            )
        prepare = chosen[0].runs["tidings"]
        prepare()()
        profiler = cProfile.Profile()
        profiler.runcall(prepare())
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    parser.add_argument("--case", help="run this case alone")
    parser.add_argument("--profile", metavar="CASE", help="profile tidings in one case instead")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, args.scale)
    else:
        run_benchmark(args.repeats, args.scale, args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
