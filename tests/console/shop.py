"""Events, projections and a seeded log for the console's tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from tests.store.readable import wait_readable
from tidings import Command, Envelope, Event
from tidings.codec import Codec
from tidings.projections import OnFailure, Projection, handles
from tidings.retry import Retry
from tidings.store import AppendResult, NewEvent, Watermark


@dataclass(frozen=True)
class PlaceOrder(Command):
    order_id: str


@dataclass(frozen=True)
class OrderPlaced(Event, type_name="console.OrderPlaced"):
    order_id: str
    note: str


@dataclass(frozen=True)
class PaymentTaken(Event, type_name="console.PaymentTaken"):
    order_id: str


@dataclass(frozen=True)
class ShipOrder(Command):
    order_id: str


@dataclass(frozen=True)
class StockReserved(Event, type_name="console.StockReserved"):
    order_id: str
    sku: str


@dataclass(frozen=True)
class OrderShipped(Event, type_name="console.OrderShipped"):
    order_id: str


class OrderCount(Projection[object]):
    """Counts orders in memory: enough read model for status and rebuilds."""

    name = "order_count"

    def __init__(self) -> None:
        self.orders: set[str] = set()
        self.lock = threading.Lock()

    def setup(self, tx: object) -> None:
        pass

    def reset(self, tx: object) -> None:
        with self.lock:
            self.orders.clear()

    @handles
    def placed(self, event: OrderPlaced, envelope: Envelope[OrderPlaced], tx: object) -> None:
        with self.lock:
            self.orders.add(event.order_id)


class Picky(Projection[object]):
    """Fails on payments while `broken`, moving on: each failure is a dead letter to retry."""

    name = "picky"
    on_failure = OnFailure.DEAD_LETTER
    retry: ClassVar[Retry] = Retry(attempts=1)
    broken = True

    def setup(self, tx: object) -> None:
        pass

    def reset(self, tx: object) -> None:
        pass

    @handles
    def paid(self, event: PaymentTaken, envelope: Envelope[PaymentTaken], tx: object) -> None:
        if Picky.broken:
            raise RuntimeError(f"payment {event.order_id} refused")


@dataclass(frozen=True)
class Seeded:
    """Where the seeded events landed."""

    command: Envelope[PlaceOrder]
    placed: int
    paid: int
    script: int


SCRIPT = "<script>window.pwned = true</script>"


class Writer(Protocol):
    """What seeding takes of a store: appends, and seeing them readable."""

    def append(self, stream: str, events: Sequence[NewEvent]) -> AppendResult: ...

    def watermark(self) -> Watermark: ...


def seed(store: Writer) -> Seeded:
    """One order placed by a command, paid in another stream, and an event holding markup."""
    codec = Codec()
    command = Envelope.new(PlaceOrder("o-1"))
    placed = command.caused(OrderPlaced("o-1", "first order"))
    paid = placed.caused(PaymentTaken("o-1"))
    marked = Envelope.new(OrderPlaced("o-2", SCRIPT))
    at_placed = store.append("Order-1", [codec.new_event(placed)]).positions[0]
    at_paid = store.append("Payment-1", [codec.new_event(paid)]).positions[0]
    at_script = store.append("Order-2", [codec.new_event(marked)]).positions[0]
    wait_readable(store, at_script)
    return Seeded(command, at_placed, at_paid, at_script)


class Stubborn(Projection[object]):
    """Parks on payments while `broken`: its letter is the event it stopped on."""

    name = "stubborn"
    retry: ClassVar[Retry] = Retry(attempts=1)
    broken = True

    def setup(self, tx: object) -> None:
        pass

    def reset(self, tx: object) -> None:
        pass

    @handles
    def paid(self, event: PaymentTaken, envelope: Envelope[PaymentTaken], tx: object) -> None:
        if Stubborn.broken:
            raise RuntimeError(f"payment {event.order_id} not understood")


def seed_request(store: Writer) -> list[int]:
    """One request that fans out: an order paid, its stock reserved, then shipped by a command.

    The shipping command, sent by a handler of the payment, is not stored: its
    event hangs under it, a second root of the request's graph. Returns the
    positions, in order: placed, paid, two reservations, shipped.
    """
    codec = Codec()
    command = Envelope.new(PlaceOrder("o-7"))
    placed = command.caused(OrderPlaced("o-7", "a fan-out"))
    paid = placed.caused(PaymentTaken("o-7"))
    reserved = [placed.caused(StockReserved("o-7", sku)) for sku in ("sku-1", "sku-2")]
    ship = paid.caused(ShipOrder("o-7"))
    shipped = ship.caused(OrderShipped("o-7"))
    positions = [
        store.append(stream, [codec.new_event(envelope)]).positions[0]
        for stream, envelope in [
            ("Order-7", placed),
            ("Payment-7", paid),
            ("Stock-sku-1", reserved[0]),
            ("Stock-sku-2", reserved[1]),
            ("Shipment-7", shipped),
        ]
    ]
    wait_readable(store, positions[-1])
    return positions
