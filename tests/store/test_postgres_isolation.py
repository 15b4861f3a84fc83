"""Races lost under every isolation level PostgreSQL may be set to raise typed errors.

The store's appends lock their stream, so under READ COMMITTED a loser sees
the winner's events and fails on its expected version. Under REPEATABLE READ
or SERIALIZABLE a transaction's snapshot is taken before it waits for that
lock, so it does not see the winner: it still loses with a `ConcurrencyError`
(retry the transaction), never a raw driver error, and keeps nothing. A plain
append is one statement of its own, so the store retries it at once and it
behaves as under READ COMMITTED.

The level is set as a session default (the same setting a server or database
default makes), as a role's default, or on a joined connection.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.services import postgres_dsn
from tests.store.rows import one
from tidings.errors import ConcurrencyError, WrongExpectedVersion
from tidings.store import AppendResult, ExpectedVersion, NewEvent, StreamState
from tidings.store.postgres import PostgresStore

pytest.importorskip("psycopg")
import psycopg
from psycopg import IsolationLevel, sql

pytestmark = pytest.mark.postgres

ANY, NO_STREAM = StreamState.ANY, StreamState.NO_STREAM
LEVELS = ["read committed", "repeatable read", "serializable"]
PATIENCE = 10.0


def new_events(count: int = 1) -> list[NewEvent]:
    from tests.store.test_contract import new_events as made

    return made(count)


@dataclass
class Setup:
    """A store whose connections run at `level`, set the way `how` names."""

    store: PostgresStore
    dsn: str  # connects as the store does, at the same level
    tag: str  # the application_name of the store's connections
    level: str


def _admin(dsn: str, statement: sql.Composed) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


@pytest.fixture(params=["session", "role"])
def setup(request: pytest.FixtureRequest, level: str) -> Iterator[Setup]:
    base = postgres_dsn()
    suffix = uuid.uuid4().hex[:10]
    schema, tag = f"isolation_{suffix}", f"isolation-{suffix}"
    if request.param == "session":
        dsn = f"{base}?application_name={tag}&options=-c%20default_transaction_isolation%3D" + (
            level.replace(" ", "%5C%20")
        )
        role = None
    else:
        role = f"tidings_isolation_{suffix}"
        _admin(base, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        _admin(
            base,
            sql.SQL("ALTER ROLE {} SET default_transaction_isolation = {}").format(
                sql.Identifier(role), sql.Literal(level)
            ),
        )
        _admin(base, sql.SQL("GRANT CREATE ON DATABASE test TO {}").format(sql.Identifier(role)))
        netloc_user = base.split("//", 1)[1].split("@", 1)[1]
        dsn = f"postgresql://{role}@{netloc_user}?application_name={tag}"
    store = PostgresStore(dsn, schema=schema)
    try:
        with psycopg.connect(dsn) as probe:
            shown = probe.execute("SHOW transaction_isolation").fetchone()
        assert shown == (level,)
        yield Setup(store, dsn, tag, level)
    finally:
        store.close()
        _admin(base, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        if role is not None:
            _admin(
                base,
                sql.SQL("REVOKE CREATE ON DATABASE test FROM {}").format(sql.Identifier(role)),
            )
            _admin(base, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Loser(threading.Thread):
    """Runs the losing write in a thread and keeps what it returned or raised."""

    def __init__(self, write: Callable[[], AppendResult]) -> None:
        super().__init__(daemon=True)
        self._write = write
        self.result: AppendResult | BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._write()
        except BaseException as exc:  # the outcome under test, raised or not
            self.result = exc

    def outcome(self) -> AppendResult | BaseException:
        self.join(PATIENCE)
        assert not self.is_alive(), "the losing write never finished"
        assert self.result is not None
        return self.result


def wait_until_blocked(dsn: str, tag: str) -> None:
    """Wait until a connection named `tag` waits for a lock: the loser's snapshot is taken."""
    deadline = time.monotonic() + PATIENCE
    with psycopg.connect(postgres_dsn(), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            (waiting,) = one(
                watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (tag,),
                )
            )
            if waiting:
                return
            time.sleep(0.005)
    raise AssertionError("the losing write never waited for the winner's lock")


def race(
    setup: Setup, stream: str, expected: ExpectedVersion, lose: Callable[[], AppendResult]
) -> AppendResult | BaseException:
    """The winner appends in a transaction and commits once the loser waits behind it."""
    loser = Loser(lose)
    with setup.store.transaction() as winner:
        winner.append(stream, new_events(1), expected)
        loser.start()
        wait_until_blocked(setup.dsn, setup.tag)
    return loser.outcome()


def in_transaction(
    setup: Setup, stream: str, batch: list[NewEvent], expected: ExpectedVersion
) -> Callable[[], AppendResult]:
    def write() -> AppendResult:
        with setup.store.transaction() as tx:
            return tx.append(stream, batch, expected)

    return write


def stored_ids(setup: Setup, stream: str) -> list[uuid.UUID]:
    return [record.event_id for record in setup.store.read_stream(stream)]


@pytest.mark.parametrize(
    ("existing", "expected"),
    [(1, 1), (1, ANY), (0, NO_STREAM), (0, 0)],
    ids=["exact", "any", "no-stream", "exact-0"],
)
def test_a_transaction_that_loses_a_stream_race_gets_a_typed_error_and_keeps_nothing(
    setup: Setup, existing: int, expected: ExpectedVersion
) -> None:
    if existing:
        setup.store.append("Order-1", new_events(existing))
    batch = new_events(2)

    outcome = race(setup, "Order-1", expected, in_transaction(setup, "Order-1", batch, expected))

    if setup.level == "read committed" and expected is ANY:
        assert isinstance(outcome, AppendResult) and outcome.version == existing + 3
        return
    assert isinstance(outcome, ConcurrencyError), repr(outcome)
    if setup.level == "read committed":
        assert isinstance(outcome, WrongExpectedVersion)
        assert outcome.actual == existing + 1
    assert not set(stored_ids(setup, "Order-1")) & {event.event_id for event in batch}
    assert setup.store.stream_version("Order-1") == existing + 1
    # Retried, the transaction sees the winner.
    if expected is ANY:
        assert in_transaction(setup, "Order-1", batch, ANY)().version == existing + 3


@pytest.mark.parametrize(
    ("existing", "expected", "actual"),
    [(1, 1, 2), (0, NO_STREAM, 1)],
    ids=["exact", "no-stream"],
)
def test_a_plain_append_that_loses_a_stream_race_gets_wrong_expected_version(
    setup: Setup, existing: int, expected: ExpectedVersion, actual: int
) -> None:
    if existing:
        setup.store.append("Order-1", new_events(existing))
    batch = new_events(2)

    outcome = race(
        setup, "Order-1", expected, lambda: setup.store.append("Order-1", batch, expected)
    )

    assert isinstance(outcome, WrongExpectedVersion), repr(outcome)
    assert (outcome.expected, outcome.actual) == (expected, actual)
    assert not set(stored_ids(setup, "Order-1")) & {event.event_id for event in batch}


def test_a_plain_append_behind_a_racing_writer_appends_after_it(setup: Setup) -> None:
    setup.store.append("Order-1", new_events(1))
    batch = new_events(2)

    outcome = race(setup, "Order-1", ANY, lambda: setup.store.append("Order-1", batch))

    assert isinstance(outcome, AppendResult), repr(outcome)
    assert outcome.version == 4
    assert stored_ids(setup, "Order-1")[2:] == [event.event_id for event in batch]


def test_a_repeated_batch_racing_its_first_append_is_stored_once(setup: Setup) -> None:
    """A client retrying while its first attempt still runs: the retry finds the batch."""
    batch = new_events(2)
    loser = Loser(lambda: setup.store.append("Order-1", batch))
    with setup.store.transaction() as first:
        stored = first.append("Order-1", batch)
        loser.start()
        wait_until_blocked(setup.dsn, setup.tag)
    outcome = loser.outcome()

    assert outcome == stored
    assert stored_ids(setup, "Order-1") == [event.event_id for event in batch]


def test_a_delete_that_loses_a_race_raises_a_typed_error(setup: Setup) -> None:
    setup.store.append("Order-1", new_events(2))
    loser = Loser(lambda: _delete(setup))
    with setup.store.transaction() as winner:
        winner.append("Order-1", new_events(1), 2)
        loser.start()
        wait_until_blocked(setup.dsn, setup.tag)
    outcome = loser.outcome()

    assert isinstance(outcome, ConcurrencyError), repr(outcome)
    assert setup.store.stream_version("Order-1") == 3


def _delete(setup: Setup) -> AppendResult:
    setup.store.delete_stream("Order-1", 2)
    return AppendResult("Order-1", 0, ())


@pytest.mark.parametrize("level_name", LEVELS)
def test_a_joined_connection_that_loses_a_race_gets_a_typed_error(level_name: str) -> None:
    dsn = postgres_dsn()
    suffix = uuid.uuid4().hex[:10]
    schema, tag = f"isolation_{suffix}", f"isolation-{suffix}"
    store = PostgresStore(dsn, schema=schema)
    levels = {
        "read committed": IsolationLevel.READ_COMMITTED,
        "repeatable read": IsolationLevel.REPEATABLE_READ,
        "serializable": IsolationLevel.SERIALIZABLE,
    }
    try:
        store.append("Order-1", new_events(1))
        batch = new_events(2)
        owner: Any = psycopg.connect(f"{dsn}?application_name={tag}")
        owner.isolation_level = levels[level_name]

        def lose() -> AppendResult:
            return store.joined(owner).append("Order-1", batch, 1)

        loser = Loser(lose)
        with store.transaction() as winner:
            winner.append("Order-1", new_events(1), 1)
            loser.start()
            wait_until_blocked(dsn, tag)
        outcome = loser.outcome()
        owner.rollback()
        owner.close()

        assert isinstance(outcome, ConcurrencyError), repr(outcome)
        if level_name == "read committed":
            assert isinstance(outcome, WrongExpectedVersion)
        assert store.stream_version("Order-1") == 2
        assert not {r.event_id for r in store.read_stream("Order-1")} & {e.event_id for e in batch}
    finally:
        store.close()
        _admin(dsn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_first_users_of_a_new_schema_all_get_in(setup: Setup) -> None:
    users = 4
    stores = [PostgresStore(setup.dsn, schema=setup.store.schema) for _ in range(users)]
    start = threading.Barrier(users)
    results: list[AppendResult | BaseException] = []

    def first_use(index: int) -> None:
        start.wait(PATIENCE)
        try:
            results.append(stores[index].append(f"Order-{index}", new_events(1)))
        except BaseException as exc:  # the outcome under test
            results.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(users)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
    finally:
        for store in stores:
            store.close()
    assert all(isinstance(result, AppendResult) for result in results), results
    assert len(results) == users
