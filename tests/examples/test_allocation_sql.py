"""The allocation service on SQL tables: concurrent allocations of one product."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from examples.allocation.bootstrap import bootstrap
from examples.allocation.database import Database, open_database
from examples.allocation.domain import Batch, OrderLine, Product
from examples.allocation.messages import Allocate
from examples.allocation.orm import (
    SqlAlchemyProductsUnitOfWork,
    SqlAllocationsView,
    clear_mappers,
)
from tests.services import postgres_dsn
from tidings import ConcurrencyError
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
        database.sessions, database.store
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
