"""The allocation service on SQL tables: concurrent allocations of one product, and its read model.

The read model is an inline projection, written with each command's events;
the command line finds it by import path and shows, rebuilds, pauses and
resumes it in the service's database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from examples.allocation.bootstrap import bootstrap
from examples.allocation.database import Database, open_database
from examples.allocation.domain import Batch, OrderLine, Product
from examples.allocation.messages import Allocate, ChangeBatchQuantity, CreateBatch
from examples.allocation.orm import (
    SqlAlchemyProductsUnitOfWork,
    SqlAllocationsView,
    allocations_view,
    clear_mappers,
)
from examples.allocation.views import ALLOCATIONS_VIEW, projections
from tests.examples.service import ROOT
from tests.services import postgres_dsn
from tidings import ConcurrencyError, MemoryStore
from tidings.integrations.sqlalchemy import StaleAggregate


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'allocation.db'}"
        schema = None
    else:
        schema = f"allocation_{uuid.uuid4().hex[:12]}"
        url = f"{postgres_dsn()}?schema={schema}"
    database = open_database(url)
    try:
        with database.unit_of_work() as uow:
            uow.products.add(Product("LAMP", [Batch("b1", "LAMP", 10)], version_number=1))
            uow.commit()
        yield database
    finally:
        database.close()
        clear_mappers()
        if schema is not None:
            import psycopg
            from psycopg import sql

            with psycopg.connect(postgres_dsn(), autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def test_of_two_concurrent_allocations_one_wins_and_the_other_conflicts(
    database: Database,
) -> None:
    first, second = database.unit_of_work(), database.unit_of_work()
    with first, second:
        mine, theirs = first.products.get("LAMP"), second.products.get("LAMP")
        assert mine is not None
        assert theirs is not None
        assert mine.allocate(OrderLine("o1", "LAMP", 10)) == "b1"
        assert theirs.allocate(OrderLine("o2", "LAMP", 10)) == "b1"
        first.commit()
        with pytest.raises(StaleAggregate) as raised:
            second.commit()
    assert isinstance(raised.value, ConcurrencyError)
    with database.unit_of_work() as uow:
        product = uow.products.get("LAMP")
        assert product is not None
        assert product.version_number == 2
        assert product.batches[0].allocations == (OrderLine("o1", "LAMP", 10),)
    events = database.store.read_stream("Product-LAMP")
    assert [(r.version, r.type) for r in events] == [(1, "allocation.Allocated")]


def test_with_the_retry_policy_both_concurrent_allocations_succeed(database: Database) -> None:
    commits = 0
    lock = threading.Lock()
    both_loaded = threading.Barrier(2, timeout=10)

    class BothReadFirst(SqlAlchemyProductsUnitOfWork):
        """The first two commits wait until both have read the product: a sure conflict."""

        def commit(self) -> None:
            nonlocal commits
            with lock:
                commits += 1
                wait = commits <= 2
            if wait:
                both_loaded.wait()
            super().commit()

    unit_of_work: Callable[[], SqlAlchemyProductsUnitOfWork] = lambda: BothReadFirst(  # noqa: E731
        database.sessions, database.store, inline=projections(database.store)
    )
    bus = bootstrap(
        unit_of_work=unit_of_work, views=SqlAllocationsView(database.engine), retry_waits=False
    )
    results: dict[str, str | None] = {}
    errors: list[BaseException] = []

    def allocate(orderid: str) -> None:
        try:
            results[orderid] = bus.handle(Allocate(orderid, "LAMP", 5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(f"o{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert results == {"o1": "b1", "o2": "b1"}
    assert commits == 3  # the loser ran again
    events = database.store.read_stream("Product-LAMP")
    assert [(r.version, r.type) for r in events] == [
        (1, "allocation.Allocated"),
        (2, "allocation.Allocated"),
    ]
    views = SqlAllocationsView(database.engine)
    assert views.for_order("o1") == [{"sku": "LAMP", "batchref": "b1"}]
    assert views.for_order("o2") == [{"sku": "LAMP", "batchref": "b1"}]


def shrink_a_batch(database: Database) -> None:
    """Six lines of 3 over `b1` (10) and a shipment; `b1` shrinks to 4 and gives two back."""
    bus = database.bus(retry_waits=False)
    bus.handle(CreateBatch("shipment", "LAMP", 30, eta="2031-01-01"))
    for n in range(6):
        bus.handle(Allocate(f"o{n}", "LAMP", 3))
    bus.handle(ChangeBatchQuantity("b1", 4))


EXPECTED_ROWS = [
    ("o0", "LAMP", "b1"),
    *((f"o{n}", "LAMP", "shipment") for n in range(1, 6)),
]


def test_a_rebuilt_read_model_equals_the_one_kept_inline(database: Database) -> None:
    shrink_a_batch(database)
    kept = view_rows(database)
    runner = database.projection_runner()
    runner.rebuild(ALLOCATIONS_VIEW)
    rebuilt = view_rows(database)
    assert kept == EXPECTED_ROWS
    assert rebuilt == kept
    types = [r.type for r in database.store.read_all()]
    assert types.count("allocation.Deallocated") == 2


def test_the_read_model_is_up_to_date_when_each_command_returns(database: Database) -> None:
    bus = database.bus(retry_waits=False)
    bus.handle(CreateBatch("shipment", "LAMP", 30, eta="2031-01-01"))
    for n in range(6):
        bus.handle(Allocate(f"o{n}", "LAMP", 3))
        assert view_rows(database)[-1] == (f"o{n}", "LAMP", "b1" if n < 3 else "shipment")
    bus.handle(ChangeBatchQuantity("b1", 4))
    assert view_rows(database) == EXPECTED_ROWS
    [status] = database.projection_runner().status()
    assert (status.state, status.position) == ("running", last_position(database))


def test_the_command_line_shows_rebuilds_pauses_and_resumes_the_read_model(
    database: Database,
) -> None:
    shrink_a_batch(database)
    [before] = tidings_projections(database, "status", "--json")
    assert (before["name"], before["state"]) == (ALLOCATIONS_VIEW, "running")
    assert before["position"] == last_position(database)
    rebuilt = tidings_projections(database, "rebuild", ALLOCATIONS_VIEW)
    assert rebuilt == f"{ALLOCATIONS_VIEW}: rebuilt, at position {head(database)}"
    assert view_rows(database) == EXPECTED_ROWS
    [after] = tidings_projections(database, "status", "--json")
    assert (after["state"], after["position"], after["lag"]) == ("running", head(database), 0)
    assert tidings_projections(database, "pause", ALLOCATIONS_VIEW) == f"{ALLOCATIONS_VIEW}: paused"
    [paused] = tidings_projections(database, "status", "--json")
    assert paused["state"] == "paused"
    assert (
        tidings_projections(database, "resume", ALLOCATIONS_VIEW) == f"{ALLOCATIONS_VIEW}: running"
    )
    [resumed] = tidings_projections(database, "status", "--json")
    assert resumed["state"] == "running"


def test_the_read_model_needs_a_store_with_sql() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        projections(MemoryStore())


def last_position(database: Database) -> int:
    """The position of the last event of the scenario's product, readable or not yet."""
    return database.store.read_stream("Product-LAMP")[-1].position


def head(database: Database) -> int:
    return database.store.read_all()[-1].position


def view_rows(database: Database) -> list[tuple[str, str, str]]:
    query = select(
        allocations_view.c.orderid, allocations_view.c.sku, allocations_view.c.batchref
    ).order_by(allocations_view.c.orderid, allocations_view.c.sku)
    with database.engine.connect() as connection:
        return [(orderid, sku, batchref) for orderid, sku, batchref in connection.execute(query)]


def tidings_projections(database: Database, *args: str) -> Any:
    """`tidings projections ...` on the database, with the example's projections: its output."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tidings", "projections", *args),
            *("--store", database.url, "--projections", "examples.allocation.views:projections"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if "--json" in args:
        return [json.loads(line) for line in done.stdout.splitlines()]
    return done.stdout.strip()
