"""Event-sourced aggregates: an `Order` with guarded transitions, and a `User`.

Their state is only what their events say: every change is recorded as an
event and applied by the `@applies` method for its type, so rebuilding from
the stream gives the same state. Methods check the rules first and record
nothing when they refuse.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from examples.orders.messages import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    UserCreated,
    UserDeactivated,
    UserEmailChanged,
)
from tidings import DomainError, EventSourced, applies


class OrderStatus(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class InvalidOrder(DomainError):
    """An order that cannot be placed as it stands."""


class InvalidTransition(DomainError):
    """An order was asked to do something its current status forbids."""

    def __init__(self, order_id: str, action: str, status: OrderStatus | None) -> None:
        self.order_id = order_id
        self.action = action
        self.status = status
        shown = status.value if status is not None else "not placed"
        super().__init__(f"cannot {action} order {order_id}: it is {shown}")


class AlreadyExists(DomainError):
    """An aggregate with this id exists already."""


class Order(EventSourced):
    """An order from placement to delivery or cancellation."""

    customer_id: str
    items: tuple[OrderItem, ...]
    total: Decimal
    currency: str
    status: OrderStatus | None
    tracking_number: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.customer_id = ""
        self.items = ()
        self.total = Decimal(0)
        self.currency = ""
        self.status = None
        self.tracking_number = None

    @classmethod
    def place(
        cls, order_id: str, customer_id: str, items: Sequence[OrderItem], currency: str = "EUR"
    ) -> Order:
        if not items:
            raise InvalidOrder(f"order {order_id} has no items")
        if any(item.quantity < 1 for item in items):
            raise InvalidOrder(f"order {order_id} has an item with a quantity below 1")
        total = sum((item.unit_price * item.quantity for item in items), Decimal(0))
        order = cls(order_id)
        order.record(OrderPlaced(order_id, customer_id, tuple(items), total, currency))
        return order

    def confirm(self, at: datetime) -> None:
        self._require("confirm", OrderStatus.PENDING)
        self.record(OrderConfirmed(self.id, at))

    def pay(self, payment_id: str, payment_method: str) -> None:
        self._require("pay", OrderStatus.CONFIRMED)
        self.record(OrderPaid(self.id, payment_id, payment_method, self.total))

    def ship(self, tracking_number: str, carrier: str, at: datetime) -> None:
        self._require("ship", OrderStatus.PAID)
        self.record(OrderShipped(self.id, tracking_number, carrier, at))

    def deliver(self, at: datetime) -> None:
        self._require("deliver", OrderStatus.SHIPPED)
        self.record(OrderDelivered(self.id, at))

    def cancel(self, reason: str, at: datetime) -> None:
        self._require("cancel", OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.PAID)
        self.record(OrderCancelled(self.id, reason, at))

    def _require(self, action: str, *allowed: OrderStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(self.id, action, self.status)

    @applies
    def _placed(self, event: OrderPlaced) -> None:
        self.customer_id = event.customer_id
        self.items = event.items
        self.total = event.total
        self.currency = event.currency
        self.status = OrderStatus.PENDING

    @applies
    def _confirmed(self, event: OrderConfirmed) -> None:
        self.status = OrderStatus.CONFIRMED

    @applies
    def _paid(self, event: OrderPaid) -> None:
        self.status = OrderStatus.PAID

    @applies
    def _shipped(self, event: OrderShipped) -> None:
        self.status = OrderStatus.SHIPPED
        self.tracking_number = event.tracking_number

    @applies
    def _delivered(self, event: OrderDelivered) -> None:
        self.status = OrderStatus.DELIVERED

    @applies
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = OrderStatus.CANCELLED


class User(EventSourced):
    """A customer account. Repeating a change that is already true records nothing."""

    name: str
    email: str
    active: bool

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.email = ""
        self.active = False

    @classmethod
    def create(cls, user_id: str, name: str, email: str) -> User:
        user = cls(user_id)
        user.record(UserCreated(user_id, name, email))
        return user

    def change_email(self, new_email: str) -> None:
        if new_email == self.email:
            return
        self.record(UserEmailChanged(self.id, self.email, new_email))

    def deactivate(self) -> None:
        if not self.active:
            return
        self.record(UserDeactivated(self.id))

    @applies
    def _created(self, event: UserCreated) -> None:
        self.name = event.name
        self.email = event.email
        self.active = True

    @applies
    def _email_changed(self, event: UserEmailChanged) -> None:
        self.email = event.new_email

    @applies
    def _deactivated(self, event: UserDeactivated) -> None:
        self.active = False
