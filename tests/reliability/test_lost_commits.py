"""Writers whose connections are killed around COMMIT, retrying as the errors tell them.

Writers append batches, in transactions or as plain appends, while a chaos
thread terminates their server processes (`pg_terminate_backend`) and cuts
their connections (a TCP relay) at random moments; `commit_delay` holds
every commit open a while, so many of the kills land inside one. Each writer
follows the store's promises to the letter: after `StoreUnavailable`
("nothing was kept") it tries again with new event ids, after
`CommitOutcomeUnknown` with the same ones, until a write is acknowledged.
Each operation's key travels in its events' data, so an operation stored
twice shows, whatever its ids. Nothing acknowledged may be lost, no
operation doubled, and no write reported as not kept may be in the log.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tests.services import postgres_dsn
from tests.store.netcut import Relay, relayed
from tests.store.rows import one
from tidings.errors import CommitOutcomeUnknown, StoreUnavailable
from tidings.store import NewEvent
from tidings.store.postgres import PostgresStore

pytest.importorskip("psycopg")
import psycopg
from psycopg import sql

pytestmark = pytest.mark.postgres

WRITERS = 3
OPERATIONS = 30  # per writer
COMMIT_DELAY_US = 20_000
PATIENCE = 60.0


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"reliability_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn(), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def batch(key: str, size: int) -> list[NewEvent]:
    """A batch of operation `key`, marked as one: a stored operation shows as its batches."""
    data = json.dumps({"operation": key, "batch": uuid.uuid4().hex}).encode()
    return [
        NewEvent(uuid.uuid4(), "Written", 1, data, uuid.uuid4(), None, datetime.now(UTC))
        for _ in range(size)
    ]


class Chaos(threading.Thread):
    """Kills the writers' connections every few milliseconds until stopped."""

    def __init__(self, relay: Relay, tag: str, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self._relay, self._tag, self._rng = relay, tag, rng
        self.stop = threading.Event()
        self.terminated = 0
        self.cuts = 0

    def run(self) -> None:
        with psycopg.connect(postgres_dsn(), autocommit=True) as admin:
            while not self.stop.wait(self._rng.uniform(0.01, 0.06)):
                if self._rng.random() < 0.5:
                    self.cuts += self._relay.cut()
                    continue
                (ended,) = one(
                    admin.execute(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                        " FROM pg_stat_activity WHERE application_name LIKE %s"
                        " AND state = 'active'",
                        (f"{self._tag}-%",),
                    )
                )
                self.terminated += int(ended)


def test_writers_retrying_as_told_through_lost_commits_lose_and_double_nothing(
    schema: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("lost commits, retried as told", workers=WRITERS)
    history = History()
    tag = f"lost-{uuid.uuid4().hex[:8]}"
    falsely_unkept: list[str] = []
    retries = {"new ids": 0, "same ids": 0}
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]
    dsn = postgres_dsn()

    with relayed(dsn) as (relay, through), psycopg.connect(dsn, autocommit=True) as admin:
        delayed = f"options=-c%20commit_delay%3D{COMMIT_DELAY_US}%20-c%20commit_siblings%3D0"
        PostgresStore(dsn, schema=schema).migrate()

        def stored(events: list[NewEvent]) -> int:
            (count,) = one(
                admin.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE event_id = ANY (%s)").format(
                        sql.Identifier(schema, "events")
                    ),
                    ([event.event_id for event in events],),
                )
            )
            return int(count)

        def write(index: int) -> None:
            own = random.Random(seeds[index])
            name = f"{tag}-{index}"
            url = f"{through}?application_name={name}&{delayed}"
            store = PostgresStore(url, schema=schema, max_size=2, timeout=10)
            try:
                for number in range(OPERATIONS):
                    key = f"writer-{index}-{number}"
                    operation = history.invoke(key, f"writer-{index}")
                    events = batch(key, own.randint(1, 3))
                    in_transaction = own.random() < 0.5
                    while True:
                        try:
                            if in_transaction:
                                with store.transaction() as tx:
                                    tx.append(f"Writer-{index}", events)
                            else:
                                store.append(f"Writer-{index}", events)
                        except StoreUnavailable:
                            # Promised: nothing kept. Sessions of a cut connection may still
                            # be finishing, so look once they are done.
                            wait_idle(admin, name)
                            if stored(events):
                                falsely_unkept.append(key)
                            retries["new ids"] += 1
                            events = batch(key, len(events))
                            continue
                        except CommitOutcomeUnknown:
                            retries["same ids"] += 1
                            continue
                        history.complete(operation, "ok")
                        break
            finally:
                store.close()

        chaos = Chaos(relay, tag, random.Random(rng.randrange(2**32)))
        chaos.start()
        try:
            threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(PATIENCE)
            assert not any(thread.is_alive() for thread in threads), "a writer never finished"
        finally:
            chaos.stop.set()
            chaos.join()
        rows = admin.execute(
            sql.SQL("SELECT data FROM {} ORDER BY position").format(
                sql.Identifier(schema, "events")
            )
        ).fetchall()

    # Each batch stored shows once, however many events it holds.
    observed = list(
        {(key, mark): key for key, mark in (mark_of(data) for (data,) in rows)}.values()
    )
    violations = history.check(observed)

    figures.kills = chaos.terminated + chaos.cuts
    figures.events = len(rows)
    figures.lost, figures.doubled = len(violations.lost), len(violations.doubled)
    figures.report(record_property)
    record_property("terminated", chaos.terminated)
    record_property("cuts", chaos.cuts)
    record_property("retries", dict(retries))
    print(f"[retries {retries}]", end=" ")
    assert not falsely_unkept, f"reported StoreUnavailable, yet kept: {falsely_unkept[:5]}"
    assert not violations, str(violations)
    assert history.count("ok") == WRITERS * OPERATIONS
    assert figures.kills > 0 and sum(retries.values()) > 0, "the chaos never hit a write"


def mark_of(data: bytes | memoryview) -> tuple[str, str]:
    found = json.loads(bytes(data))
    return str(found["operation"]), str(found["batch"])


def wait_idle(admin: psycopg.Connection[tuple[object, ...]], tag: str) -> None:
    """Until no session named `tag` runs a statement or holds a transaction open."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (busy,) = one(
            admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND (state = 'active' OR backend_xid IS NOT NULL)",
                (tag,),
            )
        )
        if not busy:
            return
        time.sleep(0.005)
