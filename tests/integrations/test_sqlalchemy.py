from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.orm import registry, sessionmaker

from tests.integrations.databases import Target, target_for
from tests.store.readable import wait_readable
from tidings import (
    Aggregate,
    Command,
    ConcurrencyError,
    Envelope,
    Event,
    InlineProjectionFailed,
    MessageBus,
    PerCall,
    Retry,
    Router,
)
from tidings.integrations.sqlalchemy import (
    SqlAlchemyRepository,
    SqlAlchemyUnitOfWork,
    StaleAggregate,
)
from tidings.projections import Projection, handles
from tidings.store import ReadModelTransaction


@dataclass(frozen=True)
class Incremented(Event, type_name="tests.Incremented"):
    counter: str
    by: int


@dataclass(frozen=True)
class Tagged(Event, type_name="tests.Tagged"):
    tag: Any


@dataclass(frozen=True)
class Increment(Command):
    by: int


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.id = name
        self.value = 0
        self.version = 0

    def increment(self, by: int) -> None:
        self.value += by
        self.version += 1
        self.record(Incremented(self.id, by))


metadata = MetaData()
counters = Table(
    "counters",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)
mappers = registry()


class CountersUnitOfWork(SqlAlchemyUnitOfWork):
    def __init__(
        self,
        sessions: Callable[[], Any],
        store: Any,
        writers: Any = None,
        inline: Sequence[Projection[ReadModelTransaction]] = (),
        **options: Any,
    ) -> None:
        super().__init__(sessions, store, writers=writers, inline=inline, **options)
        self.counters = SqlAlchemyRepository(self, Counter)


class Totals(Projection):
    """Each counter's total, in a table beside the log; increments below zero fail."""

    name = "totals"

    def __init__(self, store: Any) -> None:
        schema = getattr(store, "schema", None)
        self.table = f'"{schema}".totals' if schema else "totals"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (counter TEXT PRIMARY KEY, total BIGINT)"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute(f"DELETE FROM {self.table}")

    @handles
    def incremented(
        self, event: Incremented, envelope: Envelope[Incremented], tx: ReadModelTransaction
    ) -> None:
        if event.by < 0:
            raise ValueError("totals only grow")
        tx.execute(
            f"INSERT INTO {self.table} (counter, total) VALUES (?, ?)"
            f" ON CONFLICT (counter) DO UPDATE SET total = {self.table}.total + excluded.total",
            (event.counter, event.by),
        )

    def read(self, target: Target) -> dict[str, int]:
        with target.engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT counter, total FROM {self.table}")
            return {counter: int(total) for counter, total in rows}


@contextmanager
def mapped(backend: str, tmp_path: Path) -> Iterator[Target]:
    """A database with the counters table, `Counter` mapped to it."""
    with target_for(backend, tmp_path) as target:
        metadata.create_all(target.engine)
        mappers.map_imperatively(
            Counter,
            counters,
            properties={"id": counters.c.name},
            version_id_col=counters.c.version,
            version_id_generator=False,
        )
        try:
            yield target
        finally:
            mappers.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    with mapped(request.param, tmp_path) as target:
        yield target


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Target]:
    with mapped("postgres", tmp_path) as target:
        yield target


def new_uow(target: Target, writers: Any = None, **options: Any) -> CountersUnitOfWork:
    sessions = sessionmaker(target.engine, expire_on_commit=False)
    return CountersUnitOfWork(sessions, target.store, writers, **options)


def stored_values(target: Target) -> dict[str, int]:
    with target.engine.connect() as connection:
        rows = connection.execute(select(counters.c.name, counters.c.value))
        return {name: value for name, value in rows}


def test_rows_and_events_commit_together(target: Target) -> None:
    uow = new_uow(target)
    with uow:
        counter = Counter("a")
        counter.increment(2)
        uow.counters.add(counter)
        uow.commit()
    with uow:
        loaded = uow.counters.get("a")
        assert loaded is not None
        loaded.increment(3)
        uow.commit()
    assert stored_values(target) == {"a": 5}
    records = target.store.read_stream("Counter-a")
    assert [(r.version, r.type) for r in records] == [
        (1, "tests.Incremented"),
        (2, "tests.Incremented"),
    ]
    new = uow.collect_new_events()
    assert [e.message for e in new] == [Incremented("a", 2), Incremented("a", 3)]
    assert [e.position for e in new] == [r.position for r in records]


def test_an_inline_projection_commits_with_the_rows_and_events(target: Target) -> None:
    totals = Totals(target.store)
    sessions = sessionmaker(target.engine, expire_on_commit=False)
    uow = CountersUnitOfWork(sessions, target.store, inline=[totals])
    with uow:
        counter = Counter("a")
        counter.increment(2)
        uow.counters.add(counter)
        uow.commit()
    assert totals.read(target) == {"a": 2}
    with uow:
        found = uow.counters.get("a")
        assert found is not None
        found.increment(3)
        other = Counter("b")
        other.increment(-1)
        uow.counters.add(other)
        with pytest.raises(InlineProjectionFailed, match="'totals'"):
            uow.commit()
    assert stored_values(target) == {"a": 2}
    assert [r.version for r in target.store.read_stream("Counter-a")] == [1]
    assert target.store.read_stream("Counter-b") == []
    assert totals.read(target) == {"a": 2}


def test_leaving_without_commit_keeps_neither_rows_nor_events(target: Target) -> None:
    uow = new_uow(target)
    with uow:
        counter = Counter("a")
        counter.increment(2)
        uow.counters.add(counter)
        uow.session.flush()
    assert stored_values(target) == {}
    assert target.store.read_all() == []


def test_a_failure_after_the_rows_are_written_keeps_neither(target: Target) -> None:
    uow = new_uow(target)
    with uow:
        counter = Counter("a")
        counter.increment(2)
        counter.record(Tagged(lambda: None))  # the codec cannot encode a function
        uow.counters.add(counter)
        with pytest.raises(TypeError):
            uow.commit()
    assert stored_values(target) == {}
    assert target.store.read_all() == []


def test_a_row_changed_since_it_was_read_is_a_concurrency_error(target: Target) -> None:
    setup = new_uow(target)
    with setup:
        setup.counters.add(Counter("a"))
        setup.commit()
    writers = threading.Lock()
    first, second = new_uow(target, writers), new_uow(target, writers)
    with first, second:
        mine, theirs = first.counters.get("a"), second.counters.get("a")
        assert mine is not None
        assert theirs is not None
        mine.increment(1)
        theirs.increment(10)
        first.commit()
        assert not writers.locked()
        with pytest.raises(StaleAggregate, match="changed by someone else") as raised:
            second.commit()
        assert writers.locked()  # until the block rolls back
    assert not writers.locked()
    assert isinstance(raised.value, ConcurrencyError)
    assert stored_values(target) == {"a": 1}
    wait_readable(target.store)
    assert [r.type for r in target.store.read_all()] == ["tests.Incremented"]


def test_with_lock_on_load_a_row_is_read_for_update_and_the_next_writer_waits(
    postgres: Target,
) -> None:
    setup = new_uow(postgres)
    with setup:
        setup.counters.add(Counter("a"))
        setup.commit()
    loaded, release = threading.Event(), threading.Event()
    seen_by_follower: list[int] = []
    errors: list[BaseException] = []

    def change(by: int, first: bool) -> None:
        # No turns: the two blocks meet only in the database, as two processes' would.
        uow = new_uow(postgres, lock_on_load=True, wait_for_aggregate=None)
        try:
            with uow:
                counter = uow.counters.get("a")
                assert counter is not None
                if first:
                    loaded.set()
                    assert release.wait(30)
                else:
                    seen_by_follower.append(counter.value)
                counter.increment(by)
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    holder = threading.Thread(target=change, args=(1, True))
    holder.start()
    assert loaded.wait(30)
    follower = threading.Thread(target=change, args=(10, False))
    follower.start()
    follower.join(0.5)
    assert follower.is_alive(), "the row was read while another block held it for update"
    release.set()
    holder.join(30)
    follower.join(30)
    assert errors == []
    assert seen_by_follower == [1]
    assert stored_values(postgres) == {"a": 11}


def test_a_bus_retries_the_conflicting_command_with_a_fresh_unit_of_work(target: Target) -> None:
    setup = new_uow(target)
    with setup:
        setup.counters.add(Counter("a"))
        setup.commit()
    interloper = new_uow(target)
    calls: list[int] = []
    router = Router()

    @router.handler(retry=Retry(attempts=3, on=(ConcurrencyError,)))
    def increment(cmd: Increment, uow: CountersUnitOfWork) -> int:
        calls.append(cmd.by)
        with uow:
            counter = uow.counters.get("a")
            assert counter is not None
            if len(calls) == 1:  # someone else changes it between our read and our write
                with interloper:
                    other = interloper.counters.get("a")
                    assert other is not None
                    other.increment(100)
                    interloper.commit()
            counter.increment(cmd.by)
            uow.commit()
        return counter.value

    seen: list[Event] = []

    @router.handler
    def note(event: Incremented) -> None:
        seen.append(event)

    bus = MessageBus(
        router, dependencies={"uow": PerCall(lambda: new_uow(target))}, retry_waits=False
    )
    assert bus.handle(Increment(1)) == 101
    assert calls == [1, 1]
    assert stored_values(target) == {"a": 101}
    assert seen == [Incremented("a", 1)]
    assert [r.version for r in target.store.read_stream("Counter-a")] == [1, 2]
