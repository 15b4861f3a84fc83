"""The orders service's worker, run as `tidings worker`, keeps its read models from the log."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from examples.orders.bootstrap import bootstrap
from examples.orders.domain import OrderStatus
from examples.orders.messages import CancelOrder, CreateUser, OrderItem, PlaceOrder
from examples.orders.projections import OrderListProjection, orders_of_customer, projections, user
from tidings import SQLiteStore
from tidings.projections import ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]
WORKER = ["examples.orders.worker:worker"]
LAMP = OrderItem("lamp", 2, Decimal("19.90"))


def test_two_workers_share_the_order_list_and_keep_every_read_model(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    store = SQLiteStore(path)
    bus = bootstrap(store=store, retry_waits=False)
    for n in range(20):  # a backlog before the workers start
        bus.handle(PlaceOrder(f"o{n}", "c1", (LAMP,)))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tidings", "worker", *WORKER, "--store", f"sqlite:///{path}"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for n in range(0, 20, 2):  # and orders going on while they run
            bus.handle(CancelOrder(f"o{n}", "changed my mind"))
        bus.handle(CreateUser("u1", "Ada", "ada@example.com"))
        last = store.read_all()[-1].position
        watcher = ProjectionRunner(store, projections())
        for name in watcher.projections:
            watcher.wait_for(name, last, timeout=60)
        deadline = time.monotonic() + 60  # a few lease periods to share the partitions out
        while True:
            parts = [
                s for s in watcher.status() if s.name.startswith(OrderListProjection.name + "#")
            ]
            owners = {s.owner for s in parts}
            if (len(owners) == 2 and None not in owners) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(parts) == OrderListProjection.partitions
        assert len(owners) == 2 and None not in owners, owners
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
    logs = []
    for process in workers:
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        logs.append(errors)
    assert all("leases given back" in log for log in logs)
    with sqlite3.connect(path) as connection:
        listed = orders_of_customer(connection, "c1")
        assert len(listed) == 20
        assert {o.order_id for o in listed if o.status is OrderStatus.CANCELLED} == {
            f"o{n}" for n in range(0, 20, 2)
        }
        found = user(connection, "u1")
        assert found is not None and found.email == "ada@example.com"
    store.close()
