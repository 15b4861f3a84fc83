"""The allocation service's background work under `tidings worker`, and inside `serve`.

Two `tidings worker examples.allocation.worker:worker` processes share the
stock figures' four partitions while commands go on; the figures then match
the log's allocations. `serve` runs the same worker in its own process, so
the service alone (SQLite, no other process) keeps them too.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from examples.allocation.database import open_database
from examples.allocation.messages import (
    Allocate,
    Allocated,
    ChangeBatchQuantity,
    CreateBatch,
    Deallocated,
)
from examples.allocation.stock import ALLOCATED_STOCK, AllocatedStockProjection, StockFigures
from examples.allocation.stock import projections as stock_projections
from tests.examples.service import new_database, running_service
from tidings import Codec, RecordedEvent
from tidings.projections import ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]
WORKER = "examples.allocation.worker:worker"
SKUS = [f"SKU-{n}" for n in range(8)]


def expected_figures(records: list[RecordedEvent], codec: Codec) -> dict[str, StockFigures]:
    """Lines and units per SKU as the log's Allocated and Deallocated events have them."""
    lines: Counter[str] = Counter()
    units: Counter[str] = Counter()
    for record in records:
        event = codec.envelope(record).message
        if isinstance(event, Allocated):
            lines[event.sku] += 1
            units[event.sku] += event.qty
        elif isinstance(event, Deallocated):
            lines[event.sku] -= 1
            units[event.sku] -= event.qty
    return {sku: StockFigures(sku, lines[sku], units[sku]) for sku in lines}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    with new_database(request.param, tmp_path) as url:
        yield url


def test_two_workers_share_the_stock_figures_while_commands_go_on(store_url: str) -> None:
    url = store_url
    database = open_database(url)
    bus = database.bus(retry_waits=False)
    for sku in SKUS:  # a backlog before the workers start
        bus.handle(CreateBatch(f"batch-{sku}", sku, 10))
        bus.handle(Allocate(f"order-{sku}-1", sku, 2))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tidings", "worker", WORKER, "--store", url],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for sku in SKUS:  # and commands while they run
            bus.handle(Allocate(f"order-{sku}-2", sku, 3))
            bus.handle(Allocate(f"order-{sku}-3", sku, 4))
        for sku in SKUS[:4]:  # the latest line gives way: Deallocated, then out of stock
            bus.handle(ChangeBatchQuantity(f"batch-{sku}", 5))
        last = database.store.read_all()[-1].position
        watcher = ProjectionRunner(database.store, stock_projections(database.store))
        watcher.wait_for(ALLOCATED_STOCK, last, timeout=60)
        deadline = time.monotonic() + 60  # a few lease periods to share the partitions out
        while True:
            owners = {s.owner for s in watcher.status() if s.name.startswith(ALLOCATED_STOCK)}
            if (len(owners) == 2 and None not in owners) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(owners) == 2 and None not in owners, owners
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        assert "leases given back" in errors
    projection = AllocatedStockProjection.for_store(database.store)
    expected = expected_figures(list(database.store.read_all()), Codec(Allocated, Deallocated))
    assert expected["SKU-7"] == StockFigures("SKU-7", 3, 9)
    assert expected["SKU-0"].units < 9  # the changed batches lost lines
    with database.engine.connect() as connection:  # sqlite3 or psycopg, under SQLAlchemy
        raw = connection.connection.driver_connection
        assert {sku: projection.figures(raw, sku) for sku in SKUS} == expected
    database.close()


def test_the_service_runs_its_worker_so_sqlite_alone_keeps_the_stock_figures(
    tmp_path: Path,
) -> None:
    with running_service("sqlite", tmp_path) as service, service.client() as client:
        batch = {"ref": "b1", "sku": "LAMP", "qty": 10, "eta": None}
        assert client.post("/add_batch", json=batch).status_code == 201
        for n in range(3):
            line = {"orderid": f"o{n}", "sku": "LAMP", "qty": 2}
            assert client.post("/allocate", json=line).status_code == 202
        path = service.store_url.removeprefix("sqlite:///")
        projection = AllocatedStockProjection("allocated_stock", "?")
        deadline = time.monotonic() + 30
        found = None
        while found != StockFigures("LAMP", 3, 6) and time.monotonic() < deadline:
            time.sleep(0.1)
            with closing(sqlite3.connect(path)) as connection:
                found = projection.figures(connection, "LAMP")
        assert found == StockFigures("LAMP", 3, 6)
