"""The read side: a list of orders shaped for the screens that show them.

The order events keep it up to date; queries read it and never load an
aggregate. It lives in memory, so it starts empty and fills as events are
handled; a durable one would be a projection over the event log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from examples.orders.domain import OrderStatus
from examples.orders.messages import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderEvent,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
)


@dataclass(frozen=True)
class OrderSummary:
    """One order as the order list shows it."""

    order_id: str
    customer_id: str
    items_count: int
    total: Decimal
    currency: str
    status: OrderStatus
    placed_at: datetime
    tracking_number: str | None = None


_STATUS_AFTER = {
    OrderConfirmed: OrderStatus.CONFIRMED,
    OrderPaid: OrderStatus.PAID,
    OrderShipped: OrderStatus.SHIPPED,
    OrderDelivered: OrderStatus.DELIVERED,
    OrderCancelled: OrderStatus.CANCELLED,
}


class OrderList:
    """Orders by id, by customer and by status; safe to share between threads."""

    def __init__(self) -> None:
        self._orders: dict[str, OrderSummary] = {}
        self._lock = threading.Lock()

    def apply(self, event: OrderEvent, occurred_at: datetime) -> None:
        """Bring the list up to date with `event`; applying one twice changes nothing more."""
        with self._lock:
            if isinstance(event, OrderPlaced):
                self._orders[event.order_id] = OrderSummary(
                    order_id=event.order_id,
                    customer_id=event.customer_id,
                    items_count=sum(item.quantity for item in event.items),
                    total=event.total,
                    currency=event.currency,
                    status=OrderStatus.PENDING,
                    placed_at=occurred_at,
                )
                return
            summary = self._orders.get(event.order_id)
            if summary is None:
                return
            summary = replace(summary, status=_STATUS_AFTER[type(event)])
            if isinstance(event, OrderShipped):
                summary = replace(summary, tracking_number=event.tracking_number)
            self._orders[event.order_id] = summary

    def get(self, order_id: str) -> OrderSummary | None:
        return self._orders.get(order_id)

    def for_customer(self, customer_id: str) -> list[OrderSummary]:
        with self._lock:
            return [s for s in self._orders.values() if s.customer_id == customer_id]

    def with_status(self, status: OrderStatus) -> list[OrderSummary]:
        with self._lock:
            return [s for s in self._orders.values() if s.status is status]
