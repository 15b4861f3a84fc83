"""A transaction's batched block: statements run in order, reads see them, a failure undoes all."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.store.backends import BACKENDS, Opener
from tidings import Codec, Envelope, Event


@dataclass(frozen=True)
class Noted(Event, type_name="tests.batched.Noted"):
    text: str = "noted"


# More statements than the PostgreSQL pipeline sends between two looks at its results.
MANY = 700


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
        for name in BACKENDS
    ]
)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    with BACKENDS[request.param](tmp_path) as found:
        yield found


def table_name() -> str:
    return f"batched_{uuid.uuid4().hex[:10]}"


def create(tx: Any, table: str) -> None:
    tx.execute(
        f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, note TEXT, n BIGINT,"
        " total BIGINT NOT NULL DEFAULT 0 CHECK (total >= 0))"
    )


def test_batched_statements_run_in_order_and_a_query_sees_those_before_it(
    opener: Opener,
) -> None:
    store = opener(False)
    table = table_name()
    with store.transaction() as tx:
        create(tx, table)
    with store.transaction() as tx, tx.batched():
        for i in range(MANY):
            # Parameters of several types and sizes, None among them, and a '%' in text.
            tx.execute(
                f"INSERT INTO {table} (id, note, n) VALUES (?, ?, ?)",
                (i, None if i % 7 == 0 else f"{i}%", i * 1_000_000_007 if i % 2 else i),
            )
            tx.execute(f"UPDATE {table} SET total = total + ? WHERE id = ?", (i, i % 10))
        # Read back in the same batch: every statement above has run, in order.
        assert tx.query(f"SELECT count(*), sum(total) FROM {table}") == [(MANY, sum(range(MANY)))]
        tx.execute(f"DELETE FROM {table} WHERE id >= ?", (10,))
        tx.execute(f"UPDATE {table} SET note = '100%' WHERE id = 0")
    with store.transaction() as tx:
        rows = tx.query(f"SELECT id, note, n FROM {table} ORDER BY id")
    assert rows == [
        (
            i,
            "100%" if i == 0 else None if i % 7 == 0 else f"{i}%",
            i * 1_000_000_007 if i % 2 else i,
        )
        for i in range(10)
    ]
    store.close()


def test_a_failing_batched_statement_fails_the_transaction_and_keeps_nothing(
    opener: Opener,
) -> None:
    store = opener(False)
    table = table_name()
    with store.transaction() as tx:
        create(tx, table)
    refused = pytest.raises(Exception, match=r"(?i)check|constraint")  # the driver's own error
    with refused, store.transaction() as tx, tx.batched():
        for i in range(MANY):
            tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (i,))
        tx.execute(f"UPDATE {table} SET total = ? WHERE id = 3", (-1,))  # refused
        for i in range(MANY, MANY + 10):
            tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (i,))
    with store.transaction() as tx:
        assert tx.query(f"SELECT count(*) FROM {table}") == [(0,)]
        # The connection went back to the pool fit for use: a new batch works.
        with tx.batched():
            tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (1,))
        assert tx.query(f"SELECT id FROM {table}") == [(1,)]
    store.close()


def test_a_wrong_number_of_parameters_is_refused_in_a_batch_too(opener: Opener) -> None:
    store = opener(False)
    table = table_name()
    with store.transaction() as tx:
        create(tx, table)
    refused = pytest.raises(Exception, match=r"(?i)param|binding")  # the driver's own error
    with refused, store.transaction() as tx, tx.batched():
        tx.execute(f"INSERT INTO {table} (id, note) VALUES (?, ?)", (1,))
    with store.transaction() as tx:
        assert tx.query(f"SELECT count(*) FROM {table}") == [(0,)]
    store.close()


@pytest.mark.postgres
def test_postgres_driver_connection_is_refused_while_batched_statements_are_in_flight(
    tmp_path: Path,
) -> None:
    from tidings.store.postgres_batch import BatchOvertaken

    with BACKENDS["postgres"](tmp_path) as open_store:
        store = open_store(False)
        table = table_name()
        with store.transaction() as tx:
            create(tx, table)
        with pytest.raises(BatchOvertaken), store.transaction() as tx, tx.batched():
            tx.connection.execute(f"INSERT INTO {table} (id) VALUES (0)")  # nothing in flight
            tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (1,))
            tx.connection.execute(f"INSERT INTO {table} (id) VALUES (2)")
        with store.transaction() as tx:
            assert tx.query(f"SELECT count(*) FROM {table}") == [(0,)]
            with tx.batched():
                tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (1,))
                assert tx.query(f"SELECT id FROM {table}") == [(1,)]  # after a query, again free
                tx.connection.execute(f"INSERT INTO {table} (id) VALUES (2)")
        with store.transaction() as tx:
            assert tx.query(f"SELECT id FROM {table} ORDER BY id") == [(1,), (2,)]
        store.close()


@pytest.mark.postgres
def test_postgres_async_batch_runs_its_statements_and_reports_a_failure(tmp_path: Path) -> None:
    with BACKENDS["postgres"](tmp_path) as open_store:

        async def main() -> None:
            store = open_store(True)
            table = table_name()
            async with store.transaction() as tx:
                await tx.execute(
                    f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, n BIGINT CHECK (n >= 0))"
                )
            async with store.transaction() as tx, tx.batched():
                for i in range(MANY):
                    await tx.execute(f"INSERT INTO {table} (id, n) VALUES (?, ?)", (i, i))
            with pytest.raises(Exception, match=r"(?i)check"):
                async with store.transaction() as tx, tx.batched():
                    await tx.execute(f"UPDATE {table} SET n = n - ?", (1,))
            async with store.transaction() as tx:
                assert await tx.query(f"SELECT count(*), sum(n) FROM {table}") == [
                    (MANY, sum(range(MANY)))
                ]
            await store.aclose()

        asyncio.run(main())


def test_appends_and_reads_in_a_batch_come_after_its_statements(opener: Opener) -> None:
    codec = Codec(Noted)
    store = opener(False)
    table = table_name()
    with store.transaction() as tx:
        create(tx, table)
    with store.transaction() as tx, tx.batched():
        tx.execute(f"INSERT INTO {table} (id) VALUES (?)", (1,))
        tx.append("Noted-1", [codec.new_event(Envelope.new(Noted()))])
        tx.execute(f"UPDATE {table} SET n = ? WHERE id = 1", (7,))
        assert [r.version for r in tx.read_stream("Noted-1")] == [1]
        tx.execute(f"UPDATE {table} SET n = n + ? WHERE id = 1", (1,))
    with store.transaction() as tx:
        assert tx.query(f"SELECT id, n FROM {table}") == [(1, 8)]
        assert [r.version for r in tx.read_stream("Noted-1")] == [1]
    store.close()
