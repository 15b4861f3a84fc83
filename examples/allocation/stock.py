"""The stock desk's figures: order lines and units allocated per SKU, kept in the background.

Unlike the allocations view (inline, in each command's transaction), this
read model is kept from the log by a worker (`worker.worker`): a command
returns before it is up to date. It is split into four partitions by
product stream, so each SKU's events are applied in order by one worker at a
time while several workers share the SKUs out. Each batch of events and its
partition's checkpoint commit together: every event counts exactly once.

    tidings projections status -p examples.allocation.stock:projections
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from examples.allocation.messages import Allocated, Deallocated
from tidings import Envelope
from tidings.projections import Projection, handles
from tidings.store import ReadModelTransaction

__all__ = ["ALLOCATED_STOCK", "AllocatedStockProjection", "StockFigures", "projections"]

ALLOCATED_STOCK = "allocation.allocated_stock"
"""The projection's name, and its partitions' (`allocation.allocated_stock#0` to `#3`)."""


@dataclass(frozen=True, slots=True)
class StockFigures:
    """What one SKU has allocated now: order lines and units."""

    sku: str
    lines: int
    units: int


class AllocatedStockProjection(Projection):
    """`allocated_stock` (sku, lines, units) beside the log, in four partitions by product."""

    name = ALLOCATED_STOCK
    partitions = 4

    def __init__(self, table: str, placeholder: str) -> None:
        self.table = table
        # Writes go through the store transaction, `?` on every backend; reads through the
        # reader's own connection, with its driver's placeholder.
        p = placeholder
        self._create = (
            f"CREATE TABLE IF NOT EXISTS {table} (sku VARCHAR(255) PRIMARY KEY,"
            " lines INTEGER NOT NULL, units INTEGER NOT NULL)"
        )
        self._add = (
            f"INSERT INTO {table} AS s (sku, lines, units) VALUES (?, 1, ?)"
            " ON CONFLICT (sku) DO UPDATE SET lines = s.lines + 1, units = s.units + excluded.units"
        )
        self._remove = f"UPDATE {table} SET lines = lines - 1, units = units - ? WHERE sku = ?"
        self._select = f"SELECT sku, lines, units FROM {table} WHERE sku = {p}"

    @classmethod
    def for_store(cls, store: Any) -> AllocatedStockProjection:
        """The projection for `store`'s database: SQLite, or the store's PostgreSQL schema."""
        schema = getattr(store, "schema", None)
        if isinstance(schema, str):
            from psycopg import sql

            return cls(sql.Identifier(schema, "allocated_stock").as_string(None), "%s")
        if isinstance(getattr(store, "path", None), str):
            return cls("allocated_stock", "?")
        raise ValueError("the allocated stock is a table beside the log: SQLite or PostgreSQL")

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(self._create)

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute(f"DELETE FROM {self.table}")

    @handles
    def allocated(
        self, event: Allocated, envelope: Envelope[Allocated], tx: ReadModelTransaction
    ) -> None:
        tx.execute(self._add, (event.sku, event.qty))

    @handles
    def deallocated(
        self, event: Deallocated, envelope: Envelope[Deallocated], tx: ReadModelTransaction
    ) -> None:
        tx.execute(self._remove, (event.qty, event.sku))

    def figures(self, connection: Any, sku: str) -> StockFigures | None:
        """The figures of `sku` read on `connection` (sqlite3 or psycopg), None before any."""
        row = connection.execute(self._select, (sku,)).fetchone()
        return StockFigures(str(row[0]), int(row[1]), int(row[2])) if row is not None else None


def projections(store: Any) -> list[Projection]:
    """The projections the allocation service's worker keeps, over `store`."""
    return [AllocatedStockProjection.for_store(store)]
