"""The commands and queries the allocation service accepts and the events it records."""

from __future__ import annotations

from dataclasses import dataclass

from tidings import Command, Event, Query


@dataclass(frozen=True)
class Allocate(Command):
    """Request to allocate an order line."""

    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class CreateBatch(Command):
    """Request to create a new batch; `eta` is an ISO date, None for stock in the warehouse."""

    ref: str
    sku: str
    qty: int
    eta: str | None = None


@dataclass(frozen=True)
class ChangeBatchQuantity(Command):
    """Request to change how much a batch holds, for example after breakage."""

    ref: str
    qty: int


@dataclass(frozen=True)
class GetAllocations(Query):
    """Which batches the lines of an order went to, from the read model."""

    orderid: str


@dataclass(frozen=True)
class Allocated(Event, type_name="allocation.Allocated"):
    """Emitted when an order line is allocated to a batch."""

    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class Deallocated(Event, type_name="allocation.Deallocated"):
    """Emitted when a shrinking batch gives up an order line, which must be allocated again."""

    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class OutOfStock(Event, type_name="allocation.OutOfStock"):
    """Emitted when allocation fails due to insufficient stock."""

    sku: str
