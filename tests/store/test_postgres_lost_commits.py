"""A write whose connection is lost while it commits is reported as it ended on the server.

Each case makes many attempts. In each, the connection is lost at a random
moment around the commit: cut (the network fails both ways), partitioned
(the client's side fails, the server's session lingers, idle in its
transaction) or its server process terminated (`pg_terminate_backend`).
`commit_delay` holds every commit for a while inside its critical section,
where nothing stops it, so that many losses land in the commit itself.
Then, per attempt: a write reported done is stored once, one reported
`StoreUnavailable` left nothing (neither its events nor the application's
rows of its transaction), and `CommitOutcomeUnknown`, which only a server
out of reach for the store's whole timeout may give, is counted.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import anyio
import pytest

from tests.services import postgres_dsn
from tests.store.netcut import Relay, relayed
from tests.store.rows import one
from tidings.errors import CommitOutcomeUnknown, StoreUnavailable
from tidings.store import NewEvent
from tidings.store.postgres import AsyncPostgresStore, PostgresStore

pytest.importorskip("psycopg")
import psycopg
from psycopg import sql

pytestmark = pytest.mark.postgres

ATTEMPTS = 20
COMMIT_DELAY = 0.04  # seconds each commit spends flushing, where a loss cannot stop it
# Every commit waits, whatever else runs (commit_siblings=0).
DELAYED = f"options=-c%20commit_delay%3D{int(COMMIT_DELAY * 1e6)}%20-c%20commit_siblings%3D0"

Loss = Literal["cut", "partition", "terminate"]
Reported = Literal["ok", "unavailable", "unknown"]


@dataclass
class Tally:
    """What the attempts reported, and what they were found to have kept."""

    reported: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    resolved: int = 0  # reported done although the loss came before the call returned

    def check(self, key: str, reported: Reported, kept: int, lost_first: bool) -> None:
        self.reported[reported] += 1
        if reported == "ok":
            if kept != 1:
                self.wrong.append(f"{key}: reported done, kept {kept} times")
            self.resolved += lost_first
        elif reported == "unavailable" and kept:
            self.wrong.append(f"{key}: reported StoreUnavailable (nothing kept), yet kept")
        elif kept > 1:
            self.wrong.append(f"{key}: kept {kept} times")


@dataclass
class Setup:
    relay: Relay
    url: str  # through the relay, with every commit delayed, named `schema`
    schema: str
    admin: psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def setup() -> Iterator[Setup]:
    dsn = postgres_dsn()
    schema = f"lost_{uuid.uuid4().hex[:12]}"
    with relayed(dsn) as (relay, through), psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        admin.execute(sql.SQL("CREATE TABLE {} (name text)").format(sql.Identifier(schema, "rows")))
        try:
            yield Setup(relay, f"{through}?{DELAYED}&application_name={schema}", schema, admin)
        finally:
            relay.heal()
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def new_events(count: int) -> list[NewEvent]:
    from tests.store.test_contract import new_events as made

    return made(count)


class Loser(threading.Thread):
    """Loses the connection `delay` seconds from now, the way `loss` says."""

    def __init__(self, setup: Setup, loss: Loss, delay: float, pid: Callable[[], int | None]):
        super().__init__(daemon=True)
        self._setup, self._loss, self._delay, self._pid = setup, loss, delay, pid
        self.at = float("inf")

    def run(self) -> None:
        time.sleep(self._delay)
        self.at = time.monotonic()
        if self._loss == "cut":
            self._setup.relay.cut()
        elif self._loss == "partition":
            self._setup.relay.partition()
        else:
            pid = self._pid()
            if pid is not None:
                self._setup.admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def kept(setup: Setup, stream: str, events: list[NewEvent], row: str | None) -> int:
    """How many times the attempt's events are stored (its row, if any, must match)."""
    ids = [event.event_id for event in events]
    (stored,) = one(
        setup.admin.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE event_id = ANY (%s)").format(
                sql.Identifier(setup.schema, "events")
            ),
            (ids,),
        )
    )
    times = int(stored) // len(ids) if int(stored) % len(ids) == 0 else -1
    if row is not None:
        (rows,) = one(
            setup.admin.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE name = %s").format(
                    sql.Identifier(setup.schema, "rows")
                ),
                (row,),
            )
        )
        if rows != times:
            return -1  # events and rows of one transaction disagree
    return times


def attempt(
    setup: Setup,
    tally: Tally,
    rng: random.Random,
    loss: Loss,
    key: str,
    write: Callable[[list[NewEvent], Callable[[int], None]], None],
    *,
    row: bool,
) -> None:
    events = new_events(2)
    pid: list[int] = []
    loser = Loser(setup, loss, rng.uniform(0, COMMIT_DELAY * 1.5), lambda: pid[0] if pid else None)
    reported: Reported = "ok"

    def started(backend_pid: int) -> None:
        pid.append(backend_pid)
        loser.start()

    try:
        write(events, started)
    # The application's own statement on a lost connection fails as the driver reports it.
    except (StoreUnavailable, psycopg.OperationalError):
        reported = "unavailable"
    except CommitOutcomeUnknown as exc:
        reported = "unknown"
        tally.wrong.append(f"{key}: {exc}")  # the server was reachable all along
    returned = time.monotonic()
    if loser.ident is not None:  # not when the write failed before it began
        loser.join()
    setup.relay.heal()  # partitioned sessions end, rolling back what did not commit
    wait_for_sessions_to_end(setup)
    tally.check(key, reported, kept(setup, key, events, key if row else None), loser.at < returned)


def wait_for_sessions_to_end(setup: Setup) -> None:
    """Wait until the store's sessions are idle: a cut one may still be committing.

    The server finishes a statement whose client is gone before it ends the
    session; a healed partition's session ends once it reads its socket.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (busy,) = one(
            setup.admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND (state <> 'idle' OR backend_xid IS NOT NULL)",
                (setup.schema,),
            )
        )
        if not busy:
            return
        time.sleep(0.005)
    raise AssertionError("a session of the store stayed busy for 10 s")


def insert_row(connection: psycopg.Connection[tuple[object, ...]], schema: str, name: str) -> None:
    connection.execute(
        sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(schema, "rows")), (name,)
    )


def report(tally: Tally, loss: Loss, must_resolve: bool) -> None:
    assert not tally.wrong, tally.wrong
    assert sum(tally.reported.values()) == ATTEMPTS
    # Only a server out of reach for the whole timeout leaves the outcome unknown.
    assert tally.reported["unknown"] == 0, tally.reported
    if must_resolve:
        # Commits whose connection was lost under way were found to have committed.
        assert tally.resolved > 0, (loss, tally.reported)


@pytest.mark.parametrize("loss", ["cut", "partition", "terminate"])
def test_a_transaction_losing_its_connection_at_commit_is_reported_as_it_ended(
    setup: Setup, loss: Loss
) -> None:
    rng = random.Random(f"transaction-{loss}")
    tally = Tally()
    store = PostgresStore(setup.url, schema=setup.schema, max_size=1, timeout=10)
    store.migrate()

    def write(events: list[NewEvent], started: Callable[[int], None]) -> None:
        with store.transaction() as tx:
            started(tx.connection.info.backend_pid)
            insert_row(tx.connection, setup.schema, key)
            tx.append(key, events)

    try:
        for index in range(ATTEMPTS):
            key = f"Attempt-{index}"
            attempt(setup, tally, rng, loss, key, write, row=True)
    finally:
        store.close()
    report(tally, loss, must_resolve=loss != "terminate")


@pytest.mark.parametrize("loss", ["cut", "terminate"])
def test_a_plain_append_losing_its_connection_is_reported_as_it_ended(
    setup: Setup, loss: Loss
) -> None:
    rng = random.Random(f"append-{loss}")
    tally = Tally()
    store = PostgresStore(setup.url, schema=setup.schema, max_size=1, timeout=10)
    store.append("Seed-1", new_events(1))

    def write(events: list[NewEvent], started: Callable[[int], None]) -> None:
        started(pooled_pid(store))
        store.append(key, events)

    try:
        for index in range(ATTEMPTS):
            key = f"Attempt-{index}"
            attempt(setup, tally, rng, loss, key, write, row=False)
    finally:
        store.close()
    report(tally, loss, must_resolve=loss == "cut")


def pooled_pid(store: PostgresStore) -> int:
    """The process id of the store's one pooled connection, which its next call uses."""
    with store.transaction() as tx:
        return tx.connection.info.backend_pid


@pytest.mark.parametrize("call", ["transaction", "append"])
def test_the_async_store_resolves_lost_commits_too(setup: Setup, call: str) -> None:
    rng = random.Random(f"async-{call}")
    tally = Tally()

    async def scenario() -> None:
        store = AsyncPostgresStore(setup.url, schema=setup.schema, max_size=1, timeout=10)
        await store.migrate()
        try:
            for index in range(ATTEMPTS):
                key = f"Attempt-{index}"
                events = new_events(2)
                loser = Loser(setup, "cut", rng.uniform(0, COMMIT_DELAY * 1.5), lambda: None)
                reported: Reported = "ok"
                try:
                    if call == "transaction":
                        async with store.transaction() as tx:
                            loser.start()
                            await tx.connection.execute(
                                sql.SQL("INSERT INTO {} VALUES (%s)").format(
                                    sql.Identifier(setup.schema, "rows")
                                ),
                                (key,),
                            )
                            await tx.append(key, events)
                    else:
                        loser.start()
                        await store.append(key, events)
                except (StoreUnavailable, psycopg.OperationalError):
                    reported = "unavailable"
                except CommitOutcomeUnknown as exc:
                    reported = "unknown"
                    tally.wrong.append(f"{key}: {exc}")
                returned = time.monotonic()
                if loser.ident is not None:
                    await anyio.to_thread.run_sync(loser.join)
                row = key if call == "transaction" else None
                tally.check(key, reported, kept(setup, key, events, row), loser.at < returned)
        finally:
            await store.aclose()

    anyio.run(scenario)
    report(tally, "cut", must_resolve=True)


@pytest.mark.parametrize("loss", ["during-commit", "before-commit"])
def test_a_joined_writers_owner_learns_whether_its_lost_commit_happened(
    setup: Setup, loss: str
) -> None:
    store = PostgresStore(postgres_dsn(), schema=setup.schema)
    store.migrate()
    events = new_events(2)
    try:
        owner = psycopg.connect(setup.url)
        store.joined(owner).append("Owned-1", events)
        (transaction_id,) = one(owner.execute("SELECT pg_current_xact_id()::text::bigint"))
        pid = owner.info.backend_pid
        if loss == "during-commit":
            threading.Timer(COMMIT_DELAY / 2, setup.relay.cut).start()
        else:
            setup.relay.partition()  # COMMIT never reaches the server
        with pytest.raises(psycopg.OperationalError):
            owner.commit()

        committed = store.transaction_committed(int(transaction_id), pid)

        setup.relay.heal()
        wait_for_sessions_to_end(setup)
        assert committed is (loss == "during-commit")
        assert kept(setup, "Owned-1", events, None) == (1 if committed else 0)
    finally:
        store.close()
