"""Events, projections and a seeded log for the console's tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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


class OrderCount(Projection):
    """Counts orders in memory: enough read model for status and rebuilds."""

    name = "order_count"

    def __init__(self) -> None:
        self.orders: set[str] = set()
        self.lock = threading.Lock()

    def setup(self, tx: Any) -> None:
        pass

    def reset(self, tx: Any) -> None:
        with self.lock:
            self.orders.clear()

    @handles
    def placed(self, event: OrderPlaced, envelope: Envelope[OrderPlaced], tx: Any) -> None:
        with self.lock:
            self.orders.add(event.order_id)


class Picky(Projection):
    """Fails on payments while `broken`, moving on: each failure is a dead letter to retry."""

    name = "picky"
    on_failure = OnFailure.DEAD_LETTER
    retry: ClassVar[Retry] = Retry(attempts=1)
    broken = True

    def setup(self, tx: Any) -> None:
        pass

    def reset(self, tx: Any) -> None:
        pass

    @handles
    def paid(self, event: PaymentTaken, envelope: Envelope[PaymentTaken], tx: Any) -> None:
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


class Stubborn(Projection):
    """Parks on payments while `broken`: its letter is the event it stopped on."""

    name = "stubborn"
    retry: ClassVar[Retry] = Retry(attempts=1)
    broken = True

    def setup(self, tx: Any) -> None:
        pass

    def reset(self, tx: Any) -> None:
        pass

    @handles
    def paid(self, event: PaymentTaken, envelope: Envelope[PaymentTaken], tx: Any) -> None:
        if Stubborn.broken:
            raise RuntimeError(f"payment {event.order_id} not understood")
