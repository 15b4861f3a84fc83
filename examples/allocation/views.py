"""The read model: which batch each order line went to, kept up to date by the events.

`AllocationsView` is the seam: the handlers of `Allocated` and `Deallocated`
write through it, `GetAllocations` reads it. The one here keeps rows in a
dict; `orm.SqlAllocationsView` keeps them in the `allocations_view` table of
the service's database. Writes are idempotent per (order, SKU), so a handler
run again after a failure changes nothing more.
"""

from __future__ import annotations

import threading
from typing import Protocol, TypedDict


class AllocationRow(TypedDict):
    sku: str
    batchref: str


class AllocationsView(Protocol):
    def add(self, orderid: str, sku: str, batchref: str) -> None:
        """Note that `orderid`'s line of `sku` is allocated to `batchref`."""
        ...

    def remove(self, orderid: str, sku: str) -> None:
        """Forget where `orderid`'s line of `sku` was allocated."""
        ...

    def for_order(self, orderid: str) -> list[AllocationRow]:
        """The allocations of `orderid`, by SKU."""
        ...


class InMemoryAllocationsView:
    """Rows in a dict, safe for the threads of one process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        with self._lock:
            self._rows[orderid, sku] = batchref

    def remove(self, orderid: str, sku: str) -> None:
        with self._lock:
            self._rows.pop((orderid, sku), None)

    def for_order(self, orderid: str) -> list[AllocationRow]:
        with self._lock:
            return [
                {"sku": sku, "batchref": batchref}
                for (order, sku), batchref in sorted(self._rows.items())
                if order == orderid
            ]
