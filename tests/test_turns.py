"""Units of work of one process that load the same aggregate take turns instead of conflicting.

On PostgreSQL, blocks run concurrently, so without turns every writer of one
hot aggregate but the first to commit fails with `WrongExpectedVersion`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest

from tests.services import postgres_dsn
from tidings import (
    AsyncUnitOfWork,
    ConcurrencyError,
    Event,
    EventSourced,
    MemoryStore,
    UnitOfWork,
    WrongExpectedVersion,
    applies,
)
from tidings.store.postgres import AsyncPostgresStore, PostgresStore

WRITERS = 8
HOLD = 0.02  # seconds each block keeps its aggregate loaded, to make the writers overlap


@dataclass(frozen=True)
class Counted(Event, type_name="turns.Counted"):
    by: int


class Counter(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    def count(self, by: int) -> None:
        self.record(Counted(by))

    @applies
    def _counted(self, event: Counted) -> None:
        self.total += event.by


@pytest.fixture
def schema() -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"turns_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn(), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def store(schema: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn(), schema=schema)
    uow = UnitOfWork(opened)
    with uow:
        counter = Counter("hot")
        counter.count(0)
        uow.repository(Counter).add(counter)
        uow.commit()
    yield opened
    opened.close()


def count_in_threads(store: PostgresStore, wait: float | None) -> list[BaseException]:
    """Every writer adds 1 to the hot counter at once; the errors they met."""
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write() -> None:
        start.wait()
        uow = UnitOfWork(store, wait_for_aggregate=wait)
        try:
            with uow:
                counter = uow.repository(Counter).get("hot")
                assert counter is not None
                time.sleep(HOLD)
                counter.count(1)
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def total(store: PostgresStore) -> int:
    uow = UnitOfWork(store)
    with uow:
        counter = uow.repository(Counter).get("hot")
    assert counter is not None
    return counter.total


def test_writers_of_one_aggregate_take_turns_and_none_conflicts(store: PostgresStore) -> None:
    assert count_in_threads(store, wait=5.0) == []
    assert total(store) == WRITERS


def test_without_turns_the_same_writers_conflict(store: PostgresStore) -> None:
    errors = count_in_threads(store, wait=None)
    assert errors and all(isinstance(e, WrongExpectedVersion) for e in errors)
    assert total(store) == WRITERS - len(errors)


def test_async_writers_of_one_aggregate_take_turns(schema: str) -> None:
    async def main() -> int:
        async with AsyncPostgresStore(postgres_dsn(), schema=schema) as store:
            uow = AsyncUnitOfWork(store)
            async with uow:
                counter = Counter("hot")
                counter.count(0)
                await uow.repository(Counter).add(counter)
                await uow.commit()

            async def write() -> None:
                uow = AsyncUnitOfWork(store)
                async with uow:
                    counter = await uow.repository(Counter).get("hot")
                    assert counter is not None
                    await anyio.sleep(HOLD)
                    counter.count(1)
                    await uow.commit()

            async with anyio.create_task_group() as group:
                for _ in range(WRITERS):
                    group.start_soon(write)
            async with uow:
                loaded = await uow.repository(Counter).get("hot")
            assert loaded is not None
            return loaded.total

    assert anyio.run(main) == WRITERS


def test_a_turn_is_given_back_when_its_block_fails(store: PostgresStore) -> None:
    failing = UnitOfWork(store)
    with pytest.raises(ZeroDivisionError), failing:
        assert failing.repository(Counter).get("hot") is not None
        _ = 1 / 0

    began = time.monotonic()
    errors = []

    def load() -> None:
        uow = UnitOfWork(store, wait_for_aggregate=5.0)
        with uow:
            if uow.repository(Counter).get("hot") is None:
                errors.append("not found")

    thread = threading.Thread(target=load)
    thread.start()
    thread.join(10)
    assert errors == []
    assert time.monotonic() - began < 1.0


def test_a_nested_block_of_the_same_thread_does_not_wait_for_its_enclosing_one(
    store: PostgresStore,
) -> None:
    outer, inner = UnitOfWork(store, wait_for_aggregate=5.0), UnitOfWork(store)
    with outer:
        assert outer.repository(Counter).get("hot") is not None
        began = time.monotonic()
        with inner:
            assert inner.repository(Counter).get("hot") is not None
        assert time.monotonic() - began < 1.0


def test_blocks_loading_two_aggregates_in_opposite_orders_wait_a_bounded_time(
    store: PostgresStore,
) -> None:
    seeding = UnitOfWork(store)
    with seeding:
        other = Counter("cold")
        other.count(0)
        seeding.repository(Counter).add(other)
        seeding.commit()
    both_hold_one = threading.Barrier(2)
    outcomes: list[str] = []

    def write(first: str, second: str) -> None:
        uow = UnitOfWork(store, wait_for_aggregate=0.3)
        try:
            with uow:
                a = uow.repository(Counter).get(first)
                both_hold_one.wait()
                b = uow.repository(Counter).get(second)
                assert a is not None and b is not None
                a.count(1)
                b.count(1)
                uow.commit()
            outcomes.append("committed")
        except ConcurrencyError:  # a stale version, or PostgreSQL's deadlock between the appends
            outcomes.append("conflict")

    began = time.monotonic()
    threads = [
        threading.Thread(target=write, args=("hot", "cold")),
        threading.Thread(target=write, args=("cold", "hot")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - began < 3.0
    assert sorted(outcomes) == ["committed", "conflict"]


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="wait_for_aggregate"):
        UnitOfWork(MemoryStore(), wait_for_aggregate=-1)
