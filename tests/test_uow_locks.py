"""`lock_on_load`: blocks of several processes that change one aggregate wait for each other.

Each writer below has a store of its own, so its own connections: PostgreSQL
sees them as it would see writers in separate processes, and the turns that
blocks of one store take in a process do not apply between them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import anyio
import pytest

from tests.services import postgres_dsn
from tests.test_turns import Counter
from tidings import AsyncUnitOfWork, UnitOfWork
from tidings.store.postgres import AsyncPostgresStore, PostgresStore

WRITERS = 4
PATIENCE = 30.0  # seconds a case waits for its writers before it fails


@pytest.fixture
def schema() -> Iterator[str]:
    import psycopg
    from psycopg import sql

    dsn = postgres_dsn()
    name = f"uow_locks_{uuid.uuid4().hex[:12]}"
    with PostgresStore(dsn, schema=name) as store:
        uow = UnitOfWork(store)
        with uow:
            counter = Counter("hot")
            counter.count(0)
            uow.repository(Counter).add(counter)
            uow.commit()
    yield name
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def total(schema: str) -> int:
    with PostgresStore(postgres_dsn(), schema=schema) as store:
        uow = UnitOfWork(store)
        with uow:
            counter = uow.repository(Counter).get("hot")
    assert counter is not None
    return counter.total


def test_a_block_elsewhere_waits_for_the_lock_then_loads_what_was_committed(schema: str) -> None:
    loaded, release = threading.Event(), threading.Event()
    seen_by_follower: list[int] = []
    errors: list[BaseException] = []

    def change(store: PostgresStore, first: bool) -> None:
        uow = UnitOfWork(store, wait_for_aggregate=None, lock_on_load=True)
        try:
            with uow:
                counter = uow.repository(Counter).get("hot")
                assert counter is not None
                if first:
                    loaded.set()
                    assert release.wait(PATIENCE)
                else:
                    seen_by_follower.append(counter.total)
                counter.count(1)
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    dsn = postgres_dsn()
    with PostgresStore(dsn, schema=schema) as one, PostgresStore(dsn, schema=schema) as other:
        holder = threading.Thread(target=change, args=(one, True))
        holder.start()
        assert loaded.wait(PATIENCE)
        follower = threading.Thread(target=change, args=(other, False))
        follower.start()
        follower.join(0.5)
        assert follower.is_alive(), "the second block loaded the aggregate another one holds"
        assert seen_by_follower == []
        release.set()
        holder.join(PATIENCE)
        follower.join(PATIENCE)

    assert errors == []
    assert seen_by_follower == [1]  # it read the holder's commit, so it did not conflict
    assert total(schema) == 2


def test_writers_with_stores_of_their_own_all_commit_without_a_conflict(schema: str) -> None:
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write() -> None:
        with PostgresStore(postgres_dsn(), schema=schema) as store:
            start.wait(PATIENCE)
            uow = UnitOfWork(store, wait_for_aggregate=None, lock_on_load=True)
            try:
                with uow:
                    counter = uow.repository(Counter).get("hot")
                    assert counter is not None
                    counter.count(1)
                    uow.commit()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert total(schema) == WRITERS


def test_async_writers_with_stores_of_their_own_all_commit(schema: str) -> None:
    async def write() -> None:
        async with AsyncPostgresStore(postgres_dsn(), schema=schema) as store:
            uow = AsyncUnitOfWork(store, wait_for_aggregate=None, lock_on_load=True)
            async with uow:
                counter = await uow.repository(Counter).get("hot")
                assert counter is not None
                await anyio.sleep(0.02)  # the writers overlap: each holds the aggregate a while
                counter.count(1)
                await uow.commit()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(WRITERS):
                group.start_soon(write)

    anyio.run(main)
    assert total(schema) == WRITERS
