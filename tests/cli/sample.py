"""Messages the CLI tests store and read back."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tidings.messages import Command, Event


@dataclass(frozen=True)
class PlaceOrder(Command):
    order_id: str


@dataclass(frozen=True)
class ShipOrder(Command):
    order_id: str


@dataclass(frozen=True)
class OrderPlaced(Event, type_name="cli.OrderPlaced"):
    order_id: str
    total: Decimal


@dataclass(frozen=True)
class PaymentRequested(Event, type_name="cli.PaymentRequested"):
    order_id: str


@dataclass(frozen=True)
class OrderConfirmed(Event, type_name="cli.OrderConfirmed"):
    order_id: str


@dataclass(frozen=True)
class OrderShipped(Event, type_name="cli.OrderShipped"):
    order_id: str
