"""Writers racing on shared streams: every acknowledged append is there once, at its version.

Exact-version appenders: writers, each with a store of its own (its own
connections), append one event at a time to a few shared streams, each at
the version it last saw. A loser gets `WrongExpectedVersion` (nothing kept),
rereads the version and tries again with a new event. The history of what
each writer was told must match the log: every acknowledged event once, at
the version it was acknowledged at; no refused event; versions dense.

No-stream race: in each round every writer tries, at the same moment, to
create the same new stream (`NO_STREAM`). Exactly one wins each round, the
stream holds its event alone, and every loser was told so.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tests.services import postgres_dsn
from tidings.errors import WrongExpectedVersion
from tidings.store import EventStore, NewEvent, StreamState
from tidings.store.urls import open_store

WRITERS = 6
STREAMS = 3
APPENDS = 40  # per writer
ROUNDS = 20
PATIENCE = 60.0


@pytest.fixture(params=["sqlite", "postgres", "postgres-repeatable-read"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A durable store; on PostgreSQL also with REPEATABLE READ as its sessions' default.

    Under snapshot isolation a loser's snapshot predates the winner's commit:
    the store must still answer with typed errors and keep nothing twice.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    import psycopg
    from psycopg import sql

    dsn = postgres_dsn()
    schema = f"reliability_{uuid.uuid4().hex[:12]}"
    options = ""
    if request.param == "postgres-repeatable-read":
        options = "&options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
    try:
        yield f"{dsn}?schema={schema}{options}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def event(key: uuid.UUID) -> NewEvent:
    return NewEvent(key, "Raced", 1, b"{}", key, None, datetime.now(UTC))


def run_writers(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    if errors:
        raise errors[0]


def settled_log(store: EventStore, count: int) -> list[tuple[str, int, uuid.UUID]]:
    """`$all` once it shows `count` events (PostgreSQL shows commits once older ones end)."""
    deadline = time.monotonic() + PATIENCE
    while len(log := store.read_all()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [(record.stream, record.version, record.event_id) for record in log]


def test_exact_version_appenders_lose_and_keep_nothing_twice(
    url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("exact-version appenders", workers=WRITERS)
    history = History()
    acknowledged: dict[uuid.UUID, tuple[str, int]] = {}
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]
    stores = [open_store(url) for _ in range(WRITERS)]

    def write(index: int) -> None:
        own, store = random.Random(seeds[index]), stores[index]
        seen = dict.fromkeys((f"Shared-{s}" for s in range(STREAMS)), 0)
        for _ in range(APPENDS):
            stream = f"Shared-{own.randrange(STREAMS)}"
            while True:
                key = uuid.uuid4()
                operation = history.invoke(key, f"writer-{index}")
                try:
                    result = store.append(stream, [event(key)], seen[stream])
                except WrongExpectedVersion as exc:
                    history.complete(operation, "failed", str(exc))
                    seen[stream] = exc.actual or 0
                    continue
                history.complete(operation, "ok")
                acknowledged[key] = (stream, result.version)
                seen[stream] = result.version
                break

    try:
        run_writers(WRITERS, write)
        log = settled_log(stores[0], WRITERS * APPENDS)
    finally:
        for store in stores:
            store.close()

    violations = history.check(key for _, _, key in log)
    conflicts = history.count("failed")
    figures.events = len(log)
    figures.lost, figures.doubled = len(violations.lost), len(violations.doubled)
    figures.report(record_property)
    record_property("conflicts", conflicts)
    assert not violations, str(violations)
    assert len(log) == WRITERS * APPENDS
    assert conflicts > 0, "the writers never raced"
    for stream in {stream for stream, _, _ in log}:
        versions = [version for name, version, _ in log if name == stream]
        assert versions == list(range(1, len(versions) + 1)), stream
    assert {key: (stream, version) for stream, version, key in log} == acknowledged


def test_writers_racing_to_create_a_stream_have_one_winner_each_round(
    url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("no-stream race", workers=WRITERS)
    history = History()
    stores = [open_store(url) for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    winners: dict[str, list[uuid.UUID]] = {}
    lock = threading.Lock()
    jitter = [[rng.uniform(0, 0.002) for _ in range(ROUNDS)] for _ in range(WRITERS)]

    def race(index: int) -> None:
        for round_ in range(ROUNDS):
            stream = f"Race-{round_}"
            key = uuid.uuid4()
            start.wait(PATIENCE)
            time.sleep(jitter[index][round_])
            operation = history.invoke(key, f"writer-{index}")
            try:
                stores[index].append(stream, [event(key)], StreamState.NO_STREAM)
            except WrongExpectedVersion as exc:
                history.complete(operation, "failed", f"found version {exc.actual}")
                continue
            history.complete(operation, "ok")
            with lock:
                winners.setdefault(stream, []).append(key)

    try:
        run_writers(WRITERS, race)
        log = settled_log(stores[0], ROUNDS)
    finally:
        for store in stores:
            store.close()

    violations = history.check(key for _, _, key in log)
    figures.events = len(log)
    figures.lost, figures.doubled = len(violations.lost), len(violations.doubled)
    figures.report(record_property)
    assert not violations, str(violations)
    assert history.count("ok") == ROUNDS
    assert history.count("failed") == ROUNDS * (WRITERS - 1)
    # Each loser was told the stream already holds the winner's event.
    assert {op.detail for op in history.operations() if op.outcome == "failed"} == {
        "found version 1"
    }
    assert all(len(keys) == 1 for keys in winners.values()), winners
    assert sorted((stream, key) for stream, _, key in log) == sorted(
        (stream, keys[0]) for stream, keys in winners.items()
    )
    assert all(version == 1 for _, version, _ in log)
