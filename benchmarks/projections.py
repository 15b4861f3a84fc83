"""Projections: catch-up throughput and live latency, tidings beside `eventsourcing`.

Both keep one SQL read model in the event store's own database: per event, a
balance per account upserted and a ledger row inserted, with the checkpoint
(eventsourcing: the tracking record) committed in the same transaction.

- catch-up: events per second while a projection replays a log of `--events`
  events from the start into an empty read model (two statements per event,
  through `tx.execute`), beside what bounds it: a subscription reading the
  same log with no read model, and the read model's statements alone, in
  batches as the runner sends them, with no log read;
- live: the time from an append's return (its commit) until the read model
  shows the event, p50 and p99 over `--samples` appends a few milliseconds
  apart, first by one writer, then by 4 writers at once (each waiting for its
  own). Both sides are observed the same way: a connection per writer polls
  the read model every 0.2 ms.

eventsourcing's projection runner needs a recorder with subscriptions, which
its SQLite recorder lacks: on SQLite tidings runs alone.

Run: `uv run python -m benchmarks.projections [--backend sqlite|postgres|both]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import singledispatchmethod
from importlib.metadata import version
from pathlib import Path
from typing import Any

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection as EsProjection
    from eventsourcing.projection import ProjectionRunner as EsRunner
    from eventsourcing.sqlite import SQLiteTrackingRecorder
    from eventsourcing.utils import get_topic
except ImportError as exc:
    raise SystemExit(f"{exc}: install the peers with `uv sync --all-extras --group bench`") from exc

from tidings import Codec, Envelope, Event, ReadModelTransaction
from tidings.projections import Projection, ProjectionRunner, handles
from tidings.subscriptions import Subscription

DSN = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# tidings


@dataclass(frozen=True)
class Deposited(Event, type_name="bench.Deposited"):
    account: str
    amount: int


class Balances(Projection):
    """Two statements per event, the same SQL on every backend: a balance and a ledger row."""

    name = "balances"

    def __init__(self, prefix: str = "") -> None:
        self.balances = balances = f"{prefix}balances"
        self.deposits = f"{prefix}deposits"
        self.upsert = (
            f"INSERT INTO {balances} (account, balance) VALUES (?, ?) ON CONFLICT (account)"
            f" DO UPDATE SET balance = {balances}.balance + excluded.balance"
        )
        self.insert = f"INSERT INTO {self.deposits} (event_id, account, amount) VALUES (?, ?, ?)"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.balances}"
            " (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)"
        )
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.deposits}"
            " (event_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL)"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute(f"DELETE FROM {self.balances}")
        tx.execute(f"DELETE FROM {self.deposits}")

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: ReadModelTransaction
    ) -> None:
        self.write(tx, event.account, event.amount, str(envelope.message_id))

    def write(self, tx: ReadModelTransaction, account: str, amount: int, key: str) -> None:
        tx.execute(self.upsert, (account, amount))
        tx.execute(self.insert, (key, account, amount))


# eventsourcing


class Account(Aggregate):
    @event("Opened")
    def __init__(self) -> None:
        pass

    @event("Deposited")
    def deposit(self, amount: int) -> None:
        pass


class EsSQLiteBalances(SQLiteTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS es_balances"
                " (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)"
            )
            c.execute(
                "CREATE TABLE IF NOT EXISTS es_deposits"
                " (event_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL)"
            )

    def deposit(self, account: str, amount: int, key: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO es_balances (account, balance) VALUES (?, ?) ON CONFLICT (account)"
                " DO UPDATE SET balance = es_balances.balance + excluded.balance",
                (account, amount),
            )
            c.execute(
                "INSERT INTO es_deposits (event_id, account, amount) VALUES (?, ?, ?)",
                (key, account, amount),
            )
            self._insert_tracking(c, tracking)


class EsPostgresBalances(PostgresTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = self.datastore.schema
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.es_balances"
                " (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)"
            )
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.es_deposits"
                " (event_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL)"
            )

    def deposit(self, account: str, amount: int, key: str, tracking: Tracking) -> None:
        schema = self.datastore.schema
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {schema}.es_balances (account, balance)"
                " VALUES (%s, %s) ON CONFLICT (account) DO UPDATE"
                " SET balance = es_balances.balance + excluded.balance",
                (account, amount),
            )
            c.execute(
                f"INSERT INTO {schema}.es_deposits (event_id, account, amount) VALUES (%s, %s, %s)",
                (key, account, amount),
            )
            self._insert_tracking(c, tracking)


class EsBalancesProjection(EsProjection[Any]):
    name = "balances"
    topics = (get_topic(Account.Deposited),)  # type: ignore[attr-defined]

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        pass

    @process_event.register
    def _(self, domain_event: Account.Deposited, tracking: Tracking) -> None:  # type: ignore[name-defined]
        account = str(domain_event.originator_id)
        key = f"{account}:{domain_event.originator_version}"
        self.view.deposit(account, 1, key, tracking)


# The runs


@dataclass
class Figures:
    catch_up: float  # events per second
    p50: float  # milliseconds, one writer
    p99: float
    busy_p50: float  # milliseconds, `WRITERS` writers at once
    busy_p99: float


WRITERS = 4
BATCH = 1000  # events per transaction, for the runners that batch

Reader = Callable[[str, str], int | None]  # (table, account) -> balance


@dataclass
class Target:
    backend: str
    tidings_store: Callable[[], Any]  # opens a tidings store
    es_env: dict[str, str]
    reader: Callable[[], Reader]  # a reader on its own connection, for one thread
    table: str
    es_table: str


@contextmanager
def targets(backend: str) -> Iterator[Target]:
    if backend == "sqlite":
        import sqlite3

        from tidings.store import SQLiteStore

        with tempfile.TemporaryDirectory() as directory:
            tidings_path = Path(directory) / "tidings.db"
            es_path = Path(directory) / "es.db"

            def reader() -> Reader:
                connections: dict[str, sqlite3.Connection] = {}

                def read(table: str, account: str) -> int | None:
                    path = es_path if table.startswith("es_") else tidings_path
                    connection = connections.setdefault(table, sqlite3.connect(path))
                    row = connection.execute(
                        f"SELECT balance FROM {table} WHERE account = ?", (account,)
                    ).fetchone()
                    return None if row is None else int(row[0])

                return read

            yield Target(
                backend,
                lambda: SQLiteStore(tidings_path),
                {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(es_path)},
                reader,
                "balances",
                "es_balances",
            )
        return
    import psycopg
    from psycopg import sql

    from tidings.store.postgres import PostgresStore

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    es_schema = f"bench_es_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(DSN, autocommit=True)
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(es_schema)))
    opened: list[psycopg.Connection[Any]] = []

    def reader_pg() -> Reader:
        connection = psycopg.connect(DSN, autocommit=True)
        opened.append(connection)

        def read(table: str, account: str) -> int | None:
            row = connection.execute(
                f"SELECT balance FROM {table} WHERE account = %s", (account,)
            ).fetchone()
            return None if row is None else int(row[0])

        return read

    info = psycopg.conninfo.conninfo_to_dict(DSN)
    try:
        yield Target(
            backend,
            lambda: PostgresStore(DSN, schema=schema),
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": str(info.get("dbname", "test")),
                "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
                "POSTGRES_PORT": str(info.get("port", "5432")),
                "POSTGRES_USER": str(info.get("user", "postgres")),
                "POSTGRES_PASSWORD": str(info.get("password", "")),
                "POSTGRES_SCHEMA": es_schema,
                "POSTGRES_POOL_SIZE": str(WRITERS + 2),
            },
            reader_pg,
            f"{schema}.balances",
            f"{es_schema}.es_balances",
        )
    finally:
        for connection in opened:
            connection.close()
        for name in (schema, es_schema):
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        admin.close()


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the read model did not catch up")
        time.sleep(0.0002)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def live(
    append: Callable[[int], Callable[[], None]],
    reader: Callable[[], Reader],
    table: str,
    account: Callable[[int], str],
    samples: int,
    writers: int,
) -> tuple[float, float]:
    """p50 and p99 (ms) from an append's return until the read model shows it.

    `writers` threads append at once, `samples` appends in all, each writer to
    its own account: `append(writer)` gives that writer's append, `account(writer)`
    the account it moves.
    """
    latencies: list[float] = []
    start = threading.Barrier(writers)

    def write(writer: int) -> None:
        read, one, name = reader(), append(writer), account(writer)
        start.wait()
        for i in range(samples // writers):
            one()
            appended = time.perf_counter()
            count = i + 1
            wait_until(lambda: read(table, name) == count)  # noqa: B023 (called at once)
            latencies.append(time.perf_counter() - appended)
            time.sleep(0.003)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(latencies) != samples // writers * writers:
        raise RuntimeError("a writer failed")
    return percentiles(latencies)


def fill(store: Any, codec: Codec, events: int) -> None:
    per_account = events // 100
    for account in range(100):
        batch = [
            codec.new_event(Envelope.new(Deposited(f"a{account}", 1))) for _ in range(per_account)
        ]
        store.append(f"Account-{account}", batch)


def run_subscription(target: Target, events: int) -> float:
    """Events per second a subscription reads from the start of the log, raw and decoded."""
    codec = Codec(Deposited)
    store = target.tidings_store()
    fill(store, codec, events)
    subscription = Subscription(store, batch_size=1000)
    started = time.perf_counter()
    seen = 0
    while seen < events:
        seen += len(subscription.read())
    rate = events / (time.perf_counter() - started)
    subscription.close()
    store.close()
    return rate


def server_cpu(pid: int) -> float | None:
    """Seconds of CPU a server process on this machine has used; None if it runs elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_statements(target: Target, events: int, batch_size: int) -> tuple[float, float | None]:
    """Events per second of the read model's statements alone: no log read, nothing decoded.

    The same two statements per event, in transactions of `batch_size`
    events, each batch in `tx.batched()` as the runner sends it: the
    database's own ceiling for this projection. On PostgreSQL, also the
    server's CPU time per statement (µs), read from its processes' `/proc`
    entries when it runs on this machine (each batch asks its process id
    first): a batch's statements run in one server process, on one core,
    one after the other, so this bounds any runner of this projection.
    """
    store = target.tidings_store()
    projection = Balances("floor_")
    with store.transaction() as tx:
        projection.setup(tx)
    keys = [str(uuid.uuid4()) for _ in range(events)]
    backends: dict[int, float | None] = {}  # server process: its CPU time before
    started = time.perf_counter()
    for first in range(0, events, batch_size):
        with store.transaction() as tx:
            if target.backend == "postgres":
                [(pid,)] = tx.query("SELECT pg_backend_pid()")
                if pid not in backends:
                    backends[pid] = server_cpu(pid)
            with tx.batched():
                for i in range(first, min(first + batch_size, events)):
                    projection.write(tx, f"a{i % 100}", 1, keys[i])
    rate = events / (time.perf_counter() - started)
    store.close()
    spent = 0.0
    for pid, before in backends.items():
        after = server_cpu(pid)
        if before is None or after is None:
            return rate, None
        spent += after - before
    return rate, (spent * 1e6 / (2 * events) if backends else None)


def run_tidings(target: Target, events: int, samples: int) -> Figures:
    codec = Codec(Deposited)
    store = target.tidings_store()
    # the subscription run filled the log already
    projection = Balances()
    runner = ProjectionRunner(store, [projection], codec=codec, batch_size=BATCH, poll_interval=1.0)
    started = time.perf_counter()
    runner.rebuild("balances")
    catch_up = events / (time.perf_counter() - started)
    read = target.reader()
    assert read(target.table, "a0") == events // 100

    def append(writer: int) -> Callable[[], None]:
        def one() -> None:
            event = codec.new_event(Envelope.new(Deposited(f"live{writer}", 1)))
            store.append(f"Account-live{writer}", [event])

        return one

    with runner.running():
        quiet = live(append, target.reader, target.table, lambda w: f"live{w}", samples, 1)
        busy = live(
            lambda w: append(w + 1),
            target.reader,
            target.table,
            lambda w: f"live{w + 1}",
            samples,
            WRITERS,
        )
    store.close()
    return Figures(catch_up, *quiet, *busy)


def run_eventsourcing(target: Target, events: int, samples: int) -> Figures:
    app: Application[Any] = Application(env=target.es_env)
    per_account = events // 100
    for _ in range(100):
        account = Account()
        for _ in range(per_account - 1):  # Opened is not counted, so one deposit fewer
            account.deposit(1)
        app.save(account)
    view_class = EsSQLiteBalances if target.backend == "sqlite" else EsPostgresBalances
    head = app.recorder.max_notification_id()
    started = time.perf_counter()
    runner = EsRunner(
        application_class=Application,
        projection_class=EsBalancesProjection,
        view_class=view_class,
        env=target.es_env,
    )
    with runner:
        runner.wait(head, timeout=600)
        catch_up = (events - 100) / (time.perf_counter() - started)
        accounts = [Account() for _ in range(WRITERS + 1)]
        app.save(*accounts)
        lock = threading.Lock()

        def append(writer: int) -> Callable[[], None]:
            def one() -> None:
                accounts[writer].deposit(1)
                with lock:  # one Application, its aggregates saved one at a time
                    app.save(accounts[writer])

            return one

        def account_of(writer: int) -> str:
            return str(accounts[writer].id)

        quiet = live(append, target.reader, target.es_table, account_of, samples, 1)
        busy = live(
            lambda w: append(w + 1),
            target.reader,
            target.es_table,
            lambda w: account_of(w + 1),
            samples,
            WRITERS,
        )
    return Figures(catch_up, *quiet, *busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    print(f"tidings projections vs eventsourcing {version('eventsourcing')}")
    print(
        f"{args.events} events to catch up on (two statements each),"
        f" {args.samples} live appends by 1 writer, then by {WRITERS} at once\n"
    )
    print(
        f"{'backend':9} {'runner':14} {'catch-up ev/s':>14} {'live p50 ms':>12}"
        f" {'live p99 ms':>12} {f'{WRITERS}w p50 ms':>10} {f'{WRITERS}w p99 ms':>10}"
    )
    for backend in backends:
        with targets(backend) as target:
            read_rate = run_subscription(target, args.events)
            floor, per_statement = run_statements(target, args.events, BATCH)
            ours = run_tidings(target, args.events, args.samples)
            # eventsourcing's SQLite recorder has no subscriptions, so no projection runner.
            theirs = (
                run_eventsourcing(target, args.events, args.samples)
                if backend == "postgres"
                else None
            )
        print(f"{backend:9} {'subscription':14} {read_rate:14,.0f}   (the log read, no read model)")
        cpu = "" if per_statement is None else f"; server CPU {per_statement:.1f} µs a statement"
        print(f"{backend:9} {'statements':14} {floor:14,.0f}   (the read model's SQL, no log{cpu})")
        for name, figures in (("tidings", ours), ("eventsourcing", theirs)):
            if figures is None:
                print(f"{backend:9} {name:14} {'(its SQLite recorder has no subscriptions)':>40}")
                continue
            print(
                f"{backend:9} {name:14} {figures.catch_up:14,.0f} {figures.p50:12.2f}"
                f" {figures.p99:12.2f} {figures.busy_p50:10.2f} {figures.busy_p99:10.2f}"
            )
        if theirs is None:
            print()
            continue
        print(
            f"{backend:9} {'ratio':14} {ours.catch_up / theirs.catch_up:13.1f}x"
            f" {theirs.p50 / ours.p50:11.1f}x {theirs.p99 / ours.p99:11.1f}x"
            f" {theirs.busy_p50 / ours.busy_p50:9.1f}x {theirs.busy_p99 / ours.busy_p99:9.1f}x\n"
        )


if __name__ == "__main__":
    main()
