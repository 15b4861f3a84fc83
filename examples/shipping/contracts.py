"""The integration events the two services exchange: the contract both load.

A consumer decodes a message by its type name, so both services import
these classes; each keeps the rest of its model to itself. Orders'
customer events carry the customer's state (event-carried state transfer);
`OrderPaid` carries only the order's id (event notification).
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings import Codec, Event


@dataclass(frozen=True)
class Line:
    """A quantity of one product."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class CustomerRegistered(Event, type_name="storefront.CustomerRegistered"):
    customer_id: str
    name: str
    address: str


@dataclass(frozen=True)
class CustomerMoved(Event, type_name="storefront.CustomerMoved"):
    customer_id: str
    address: str


@dataclass(frozen=True)
class OrderPlaced(Event, type_name="storefront.OrderPlaced"):
    order_id: str
    customer_id: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class OrderPaid(Event, type_name="storefront.OrderPaid"):
    """A notification: what was paid is the orders service's to tell, when asked."""

    order_id: str


@dataclass(frozen=True)
class OrderShipped(Event, type_name="storefront.OrderShipped"):
    order_id: str
    shipment_id: str


@dataclass(frozen=True)
class ShipmentDispatched(Event, type_name="shipping.ShipmentDispatched"):
    shipment_id: str
    order_id: str
    address: str
    lines: tuple[Line, ...]


CODEC = Codec(
    CustomerRegistered, CustomerMoved, OrderPlaced, OrderPaid, OrderShipped, ShipmentDispatched
)
