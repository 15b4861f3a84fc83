"""The allocation domain: products, their batches of stock, and the order lines allocated to them.

`Product` is the aggregate: every batch of one SKU changes through it, so two
allocations of the same SKU cannot both take the last units. It is
state-stored and records events as it changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from examples.allocation.messages import Allocated, Deallocated, OutOfStock
from tidings import Aggregate, DomainError


class InvalidSku(DomainError):
    """No product has this SKU."""


class InvalidBatch(DomainError):
    """No batch has this reference."""


class DuplicateBatch(DomainError):
    """A batch with this reference exists already: references name one batch, whatever its SKU."""


@dataclass(unsafe_hash=True)
class OrderLine:
    """A quantity of one SKU that a customer ordered; equal lines are the same line.

    A value object, compared and hashed by value. It is not frozen because the
    SQL mapper sets its attributes when it loads one; nothing else changes them.
    """

    orderid: str
    sku: str
    qty: int


class Batch:
    """Stock of one SKU that arrives together: in the warehouse (`eta` None) or on its way."""

    def __init__(self, ref: str, sku: str, qty: int, eta: date | None = None) -> None:
        self.reference = ref
        self.sku = sku
        self.eta = eta
        self._purchased_quantity = qty
        # A list keeps allocation order, so the most recent line is the first to give way.
        self._allocations: list[OrderLine] = []

    def __repr__(self) -> str:
        return f"<Batch {self.reference}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and other.reference == self.reference

    def __hash__(self) -> int:
        return hash(self.reference)

    def allocate(self, line: OrderLine) -> None:
        if line not in self._allocations and self.can_allocate(line):
            self._allocations.append(line)

    def deallocate_one(self) -> OrderLine:
        """Give up the line allocated last."""
        return self._allocations.pop()

    def change_purchased_quantity(self, qty: int) -> None:
        self._purchased_quantity = qty

    @property
    def allocations(self) -> tuple[OrderLine, ...]:
        return tuple(self._allocations)

    @property
    def allocated_quantity(self) -> int:
        return sum(line.qty for line in self._allocations)

    @property
    def available_quantity(self) -> int:
        return self._purchased_quantity - self.allocated_quantity

    def can_allocate(self, line: OrderLine) -> bool:
        return self.sku == line.sku and self.available_quantity >= line.qty


def _preference(batch: Batch) -> tuple[bool, date]:
    # Warehouse stock first, then shipments by earliest arrival; ties keep batch order.
    return (batch.eta is not None, batch.eta or date.min)


class Product(Aggregate):
    """Every batch of one SKU. `version_number` counts changes, for optimistic locking in SQL."""

    def __init__(self, sku: str, batches: Iterable[Batch] = (), version_number: int = 0) -> None:
        self.id = sku
        self.batches = list(batches)
        self.version_number = version_number

    @property
    def sku(self) -> str:
        return str(self.id)

    def add_batch(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.version_number += 1

    def allocate(self, line: OrderLine) -> str | None:
        """Allocate `line` to the preferred batch that can take it; None when out of stock.

        Out of stock is a fact, not an error: `OutOfStock` is recorded and the
        command succeeds, so the event is committed and its handlers run.
        """
        batch = next(
            (b for b in sorted(self.batches, key=_preference) if b.can_allocate(line)), None
        )
        if batch is None:
            self.record(OutOfStock(line.sku))
            return None
        batch.allocate(line)
        self.version_number += 1
        self.record(Allocated(line.orderid, line.sku, line.qty, batch.reference))
        return batch.reference

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        """Set a batch's quantity; lines it can no longer hold are deallocated, latest first."""
        batch = next((b for b in self.batches if b.reference == ref), None)
        if batch is None:
            raise InvalidBatch(f"Invalid batch {ref}")
        batch.change_purchased_quantity(qty)
        self.version_number += 1
        while batch.available_quantity < 0:
            line = batch.deallocate_one()
            self.record(Deallocated(line.orderid, line.sku, line.qty))
