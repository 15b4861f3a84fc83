"""Durable read models of the orders service: SQL tables in the event store's SQLite file.

Three projections run from the log with a checkpoint each (see
`tidings.projections`): the order list and the order statistics of the
first seed, and the user read model of the fourth, kept with an SQL upsert.
Their tables live in the store's own database, so each batch of events and
the checkpoint commit together: after a crash nothing is lost and nothing is
counted twice. Queries read the tables with a connection of their own.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from examples.orders.domain import OrderStatus
from examples.orders.messages import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    UserCreated,
    UserDeactivated,
    UserEmailChanged,
)
from examples.orders.views import OrderSummary
from tidings import Envelope
from tidings.projections import Projection, handles
from tidings.store import ReadModelTransaction

__all__ = [
    "OrderListProjection",
    "OrderStatistics",
    "OrderStatisticsProjection",
    "UserProjection",
    "UserRow",
    "order_statistics",
    "orders_of_customer",
    "projections",
    "user",
]


class OrderListProjection(Projection):
    """One row per order, in the shape the order screens show.

    Rows are per order, so the work splits by order: four partitions, which
    the workers running it share out (see `examples.orders.worker`).
    """

    name = "orders.order_list"
    partitions = 4

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS order_list ("
            " order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
            " items_count INTEGER NOT NULL, total TEXT NOT NULL, currency TEXT NOT NULL,"
            " status TEXT NOT NULL, placed_at TEXT NOT NULL, tracking_number TEXT)"
        )
        tx.execute("CREATE INDEX IF NOT EXISTS order_list_customer ON order_list (customer_id)")

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM order_list")

    @handles
    def placed(
        self, event: OrderPlaced, envelope: Envelope[OrderPlaced], tx: ReadModelTransaction
    ) -> None:
        tx.execute(
            "INSERT INTO order_list (order_id, customer_id, items_count, total, currency,"
            " status, placed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.order_id,
                event.customer_id,
                sum(item.quantity for item in event.items),
                str(event.total),
                event.currency,
                OrderStatus.PENDING.value,
                envelope.occurred_at.isoformat(),
            ),
        )

    @handles
    def confirmed(
        self, event: OrderConfirmed, envelope: Envelope[OrderConfirmed], tx: ReadModelTransaction
    ) -> None:
        _set_status(tx, event.order_id, OrderStatus.CONFIRMED)

    @handles
    def paid(
        self, event: OrderPaid, envelope: Envelope[OrderPaid], tx: ReadModelTransaction
    ) -> None:
        _set_status(tx, event.order_id, OrderStatus.PAID)

    @handles
    def shipped(
        self, event: OrderShipped, envelope: Envelope[OrderShipped], tx: ReadModelTransaction
    ) -> None:
        _set_status(tx, event.order_id, OrderStatus.SHIPPED)
        tx.execute(
            "UPDATE order_list SET tracking_number = ? WHERE order_id = ?",
            (event.tracking_number, event.order_id),
        )

    @handles
    def delivered(
        self, event: OrderDelivered, envelope: Envelope[OrderDelivered], tx: ReadModelTransaction
    ) -> None:
        _set_status(tx, event.order_id, OrderStatus.DELIVERED)

    @handles
    def cancelled(
        self, event: OrderCancelled, envelope: Envelope[OrderCancelled], tx: ReadModelTransaction
    ) -> None:
        _set_status(tx, event.order_id, OrderStatus.CANCELLED)


def _set_status(tx: ReadModelTransaction, order_id: str, status: OrderStatus) -> None:
    tx.execute("UPDATE order_list SET status = ? WHERE order_id = ?", (status.value, order_id))


class OrderStatisticsProjection(Projection):
    """Orders and revenue in all, orders by status and by day."""

    name = "orders.statistics"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS order_revenue (currency TEXT PRIMARY KEY,"
            " orders INTEGER NOT NULL, revenue TEXT NOT NULL)"
        )
        tx.execute(
            "CREATE TABLE IF NOT EXISTS orders_by_status (status TEXT PRIMARY KEY,"
            " orders INTEGER NOT NULL)"
        )
        tx.execute(
            "CREATE TABLE IF NOT EXISTS orders_by_day (day TEXT PRIMARY KEY,"
            " orders INTEGER NOT NULL)"
        )
        # Which status each order is counted under, to move it when the status changes.
        tx.execute(
            "CREATE TABLE IF NOT EXISTS order_statuses (order_id TEXT PRIMARY KEY,"
            " status TEXT NOT NULL)"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        for table in ("order_revenue", "orders_by_status", "orders_by_day", "order_statuses"):
            tx.execute(f"DELETE FROM {table}")

    @handles
    def placed(
        self, event: OrderPlaced, envelope: Envelope[OrderPlaced], tx: ReadModelTransaction
    ) -> None:
        rows = tx.query("SELECT revenue FROM order_revenue WHERE currency = ?", (event.currency,))
        revenue = event.total + (Decimal(str(rows[0][0])) if rows else 0)
        tx.execute(
            "INSERT INTO order_revenue (currency, orders, revenue) VALUES (?, 1, ?)"
            " ON CONFLICT (currency) DO UPDATE SET orders = orders + 1, revenue = excluded.revenue",
            (event.currency, str(revenue)),
        )
        tx.execute(
            "INSERT INTO orders_by_day (day, orders) VALUES (?, 1)"
            " ON CONFLICT (day) DO UPDATE SET orders = orders + 1",
            (envelope.occurred_at.date().isoformat(),),
        )
        tx.execute(
            "INSERT INTO order_statuses (order_id, status) VALUES (?, ?)",
            (event.order_id, OrderStatus.PENDING.value),
        )
        _count(tx, OrderStatus.PENDING, 1)

    @handles
    def confirmed(
        self, event: OrderConfirmed, envelope: Envelope[OrderConfirmed], tx: ReadModelTransaction
    ) -> None:
        _move(tx, event.order_id, OrderStatus.CONFIRMED)

    @handles
    def paid(
        self, event: OrderPaid, envelope: Envelope[OrderPaid], tx: ReadModelTransaction
    ) -> None:
        _move(tx, event.order_id, OrderStatus.PAID)

    @handles
    def shipped(
        self, event: OrderShipped, envelope: Envelope[OrderShipped], tx: ReadModelTransaction
    ) -> None:
        _move(tx, event.order_id, OrderStatus.SHIPPED)

    @handles
    def delivered(
        self, event: OrderDelivered, envelope: Envelope[OrderDelivered], tx: ReadModelTransaction
    ) -> None:
        _move(tx, event.order_id, OrderStatus.DELIVERED)

    @handles
    def cancelled(
        self, event: OrderCancelled, envelope: Envelope[OrderCancelled], tx: ReadModelTransaction
    ) -> None:
        _move(tx, event.order_id, OrderStatus.CANCELLED)


def _count(tx: ReadModelTransaction, status: OrderStatus, change: int) -> None:
    tx.execute(
        "INSERT INTO orders_by_status (status, orders) VALUES (?, ?)"
        " ON CONFLICT (status) DO UPDATE SET orders = orders + excluded.orders",
        (status.value, change),
    )


def _move(tx: ReadModelTransaction, order_id: str, status: OrderStatus) -> None:
    rows = tx.query("SELECT status FROM order_statuses WHERE order_id = ?", (order_id,))
    if not rows:
        return
    _count(tx, OrderStatus(str(rows[0][0])), -1)
    _count(tx, status, 1)
    tx.execute("UPDATE order_statuses SET status = ? WHERE order_id = ?", (status.value, order_id))


class UserProjection(Projection):
    """Users by id, kept with an SQL upsert (a user read model)."""

    name = "orders.users"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " email TEXT NOT NULL, is_active INTEGER NOT NULL,"
            " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM users")

    @handles
    def created(
        self, event: UserCreated, envelope: Envelope[UserCreated], tx: ReadModelTransaction
    ) -> None:
        at = envelope.occurred_at.isoformat()
        tx.execute(
            "INSERT INTO users (user_id, name, email, is_active, created_at, updated_at)"
            " VALUES (?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, email = excluded.email,"
            " is_active = excluded.is_active, updated_at = excluded.updated_at",
            (event.user_id, event.name, event.email, at, at),
        )

    @handles
    def email_changed(
        self,
        event: UserEmailChanged,
        envelope: Envelope[UserEmailChanged],
        tx: ReadModelTransaction,
    ) -> None:
        tx.execute(
            "UPDATE users SET email = ?, updated_at = ? WHERE user_id = ?",
            (event.new_email, envelope.occurred_at.isoformat(), event.user_id),
        )

    @handles
    def deactivated(
        self, event: UserDeactivated, envelope: Envelope[UserDeactivated], tx: ReadModelTransaction
    ) -> None:
        tx.execute(
            "UPDATE users SET is_active = 0, updated_at = ? WHERE user_id = ?",
            (envelope.occurred_at.isoformat(), event.user_id),
        )


def projections(store: object = None) -> list[Projection]:
    """The orders service's projections, also for the CLI.

    `tidings projections status -p examples.orders.projections:projections`
    """
    return [OrderListProjection(), OrderStatisticsProjection(), UserProjection()]


# Queries on the read models, each on a connection of the caller's.


def orders_of_customer(connection: sqlite3.Connection, customer_id: str) -> list[OrderSummary]:
    rows = connection.execute(
        "SELECT order_id, customer_id, items_count, total, currency, status, placed_at,"
        " tracking_number FROM order_list WHERE customer_id = ? ORDER BY placed_at, order_id",
        (customer_id,),
    )
    return [
        OrderSummary(
            order_id,
            customer,
            items,
            Decimal(total),
            currency,
            OrderStatus(status),
            datetime.fromisoformat(placed_at),
            tracking,
        )
        for order_id, customer, items, total, currency, status, placed_at, tracking in rows
    ]


@dataclass(frozen=True)
class OrderStatistics:
    orders: int
    revenue: dict[str, Decimal]
    by_status: dict[OrderStatus, int]
    by_day: dict[str, int]


def order_statistics(connection: sqlite3.Connection) -> OrderStatistics:
    revenue = {
        currency: (orders, Decimal(total))
        for currency, orders, total in connection.execute("SELECT * FROM order_revenue")
    }
    return OrderStatistics(
        orders=sum(orders for orders, _ in revenue.values()),
        revenue={currency: total for currency, (_, total) in revenue.items()},
        by_status={
            OrderStatus(status): orders
            for status, orders in connection.execute("SELECT * FROM orders_by_status")
            if orders
        },
        by_day=dict(connection.execute("SELECT day, orders FROM orders_by_day")),
    )


@dataclass(frozen=True)
class UserRow:
    user_id: str
    name: str
    email: str
    is_active: bool


def user(connection: sqlite3.Connection, user_id: str) -> UserRow | None:
    row = connection.execute(
        "SELECT user_id, name, email, is_active FROM users WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else UserRow(row[0], row[1], row[2], bool(row[3]))
