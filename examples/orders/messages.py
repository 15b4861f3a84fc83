"""The orders service's commands, events and queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tidings import Command, Event, Query


@dataclass(frozen=True)
class OrderItem:
    """A quantity of one product at its unit price."""

    product_id: str
    quantity: int
    unit_price: Decimal


# Events: what happened to an order or a user.


@dataclass(frozen=True)
class OrderPlaced(Event, type_name="orders.OrderPlaced"):
    order_id: str
    customer_id: str
    items: tuple[OrderItem, ...]
    total: Decimal
    currency: str


@dataclass(frozen=True)
class OrderConfirmed(Event, type_name="orders.OrderConfirmed"):
    order_id: str
    confirmed_at: datetime


@dataclass(frozen=True)
class OrderPaid(Event, type_name="orders.OrderPaid"):
    order_id: str
    payment_id: str
    payment_method: str
    amount: Decimal


@dataclass(frozen=True)
class OrderShipped(Event, type_name="orders.OrderShipped"):
    order_id: str
    tracking_number: str
    carrier: str
    shipped_at: datetime


@dataclass(frozen=True)
class OrderDelivered(Event, type_name="orders.OrderDelivered"):
    order_id: str
    delivered_at: datetime


@dataclass(frozen=True)
class OrderCancelled(Event, type_name="orders.OrderCancelled"):
    order_id: str
    reason: str
    cancelled_at: datetime


OrderEvent = (
    OrderPlaced | OrderConfirmed | OrderPaid | OrderShipped | OrderDelivered | OrderCancelled
)


@dataclass(frozen=True)
class UserCreated(Event, type_name="orders.UserCreated"):
    user_id: str
    name: str
    email: str


@dataclass(frozen=True)
class UserEmailChanged(Event, type_name="orders.UserEmailChanged"):
    user_id: str
    old_email: str
    new_email: str


@dataclass(frozen=True)
class UserDeactivated(Event, type_name="orders.UserDeactivated"):
    user_id: str


# Commands: what the service is asked to do.


@dataclass(frozen=True)
class PlaceOrder(Command):
    order_id: str
    customer_id: str
    items: tuple[OrderItem, ...]
    currency: str = "EUR"


@dataclass(frozen=True)
class ConfirmOrder(Command):
    order_id: str


@dataclass(frozen=True)
class PayOrder(Command):
    order_id: str
    payment_id: str
    payment_method: str


@dataclass(frozen=True)
class ShipOrder(Command):
    order_id: str
    tracking_number: str
    carrier: str


@dataclass(frozen=True)
class DeliverOrder(Command):
    order_id: str


@dataclass(frozen=True)
class CancelOrder(Command):
    order_id: str
    reason: str


@dataclass(frozen=True)
class CreateUser(Command):
    user_id: str
    name: str
    email: str


@dataclass(frozen=True)
class ChangeUserEmail(Command):
    user_id: str
    new_email: str


@dataclass(frozen=True)
class DeactivateUser(Command):
    user_id: str


# Queries: answered from the read model, never from the aggregates.


@dataclass(frozen=True)
class GetOrder(Query):
    order_id: str


@dataclass(frozen=True)
class GetCustomerOrders(Query):
    customer_id: str


@dataclass(frozen=True)
class GetPendingOrders(Query):
    pass
