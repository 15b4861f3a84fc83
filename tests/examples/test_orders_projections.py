"""The orders service's durable read models: order list, statistics and users, in SQLite."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from examples.orders.bootstrap import bootstrap
from examples.orders.domain import OrderStatus
from examples.orders.messages import (
    CancelOrder,
    ChangeUserEmail,
    ConfirmOrder,
    CreateUser,
    DeactivateUser,
    OrderItem,
    PayOrder,
    PlaceOrder,
    ShipOrder,
)
from examples.orders.projections import order_statistics, orders_of_customer, projections, user
from tidings import SQLiteStore
from tidings.projections import ProjectionRunner

LAMP = OrderItem("lamp", 2, Decimal("19.90"))
DESK = OrderItem("desk", 1, Decimal("249.00"))


def test_the_read_models_follow_the_orders_and_users(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "orders.db")
    bus = bootstrap(store=store, retry_waits=False)
    bus.handle(PlaceOrder("o1", "c1", (LAMP, DESK)))
    bus.handle(ConfirmOrder("o1"))
    bus.handle(PayOrder("o1", "p1", "card"))
    runner = ProjectionRunner(store, projections(), poll_interval=0.05)
    with runner.running():
        bus.handle(ShipOrder("o1", "TN-1", "DHL"))
        bus.handle(PlaceOrder("o2", "c1", (LAMP,)))
        bus.handle(CancelOrder("o2", "changed my mind"))
        bus.handle(CreateUser("u1", "Ada", "ada@example.com"))
        bus.handle(ChangeUserEmail("u1", "ada@example.org"))
        bus.handle(DeactivateUser("u1"))
        last = store.read_all()[-1].position
        for name in runner.projections:
            runner.wait_for(name, last)
    with sqlite3.connect(tmp_path / "orders.db") as connection:
        listed = orders_of_customer(connection, "c1")
        assert [(o.order_id, o.status, o.tracking_number) for o in listed] == [
            ("o1", OrderStatus.SHIPPED, "TN-1"),
            ("o2", OrderStatus.CANCELLED, None),
        ]
        assert listed[0].items_count == 3
        assert listed[0].total == Decimal("288.80")
        statistics = order_statistics(connection)
        assert statistics.orders == 2
        assert statistics.revenue == {"EUR": Decimal("328.60")}
        assert statistics.by_status == {OrderStatus.SHIPPED: 1, OrderStatus.CANCELLED: 1}
        assert sum(statistics.by_day.values()) == 2
        found = user(connection, "u1")
        assert found is not None
        assert (found.email, found.is_active) == ("ada@example.org", False)
        before = (listed, statistics, found)
    for name in list(runner.projections):
        runner.rebuild(name)
    with sqlite3.connect(tmp_path / "orders.db") as connection:
        after = (
            orders_of_customer(connection, "c1"),
            order_statistics(connection),
            user(connection, "u1"),
        )
    assert after == before
    store.close()
