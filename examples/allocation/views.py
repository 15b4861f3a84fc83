"""The read model: which batch each order line went to, a projection of the events.

`AllocationsView` is the seam `GetAllocations` reads through. In the
service, `AllocationsProjection` keeps the `allocations_view` table inline:
each unit of work (`database.Database.unit_of_work`) hands it the `Allocated`
and `Deallocated` it appends, in the transaction that stores them, so the
table is up to date when the command returns, and each event changes it
exactly once. A projection runner rebuilds it from the log
(`runner.rebuild`, or `tidings projections rebuild`); no runner runs it.
`orm.SqlAllocationsView` reads that table. In memory, `InMemoryAllocationsView`
applies the same events from the log on each read, so a script or a test
reads its own writes without running a projection runner.

The command line finds the projection here::

    tidings projections status -p examples.allocation.views:projections
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from examples.allocation.messages import Allocated, Deallocated
from tidings import Codec, Envelope, EventStore
from tidings.projections import Projection, handles
from tidings.store import ReadModelTransaction

__all__ = [
    "ALLOCATIONS_VIEW",
    "AllocationRow",
    "AllocationsProjection",
    "AllocationsView",
    "InMemoryAllocationsView",
    "projections",
]

ALLOCATIONS_VIEW = "allocation.allocations_view"
"""The projection's name: its checkpoint's, and the one `wait_for` and the CLI take."""


class AllocationRow(TypedDict):
    sku: str
    batchref: str


class AllocationsView(Protocol):
    def for_order(self, orderid: str) -> list[AllocationRow]:
        """The allocations of `orderid`, by SKU."""
        ...


@dataclass(frozen=True, slots=True)
class _Statements:
    """The projection's SQL for one database: its table's name filled in."""

    create: str
    upsert: str
    delete: str
    reset: str

    @staticmethod
    def of(table: str) -> _Statements:
        def statement(template: str) -> str:
            return template.format(table=table)

        return _Statements(
            create=statement(
                "CREATE TABLE IF NOT EXISTS {table} (orderid VARCHAR(255) NOT NULL,"
                " sku VARCHAR(255) NOT NULL, batchref VARCHAR(255) NOT NULL,"
                " PRIMARY KEY (orderid, sku))"
            ),
            upsert=statement(
                "INSERT INTO {table} (orderid, sku, batchref) VALUES (?, ?, ?)"
                " ON CONFLICT (orderid, sku) DO UPDATE SET batchref = excluded.batchref"
            ),
            delete=statement("DELETE FROM {table} WHERE orderid = ? AND sku = ?"),
            reset=statement("DELETE FROM {table}"),
        )


class AllocationsProjection(Projection):
    """`allocations_view` in the store's database, written in the transaction of the events.

    The table goes beside the log: in the SQLite file, or in the store's
    schema on PostgreSQL; `for_store` names it. Its statements go through
    the transaction (`tx.execute`, `?` for parameters), whether a runner's or
    a unit of work's, a SQLAlchemy one's included.
    """

    name = ALLOCATIONS_VIEW

    def __init__(self, statements: _Statements) -> None:
        self._sql = statements

    @classmethod
    def for_store(cls, store: Any) -> AllocationsProjection:
        """The projection for `store`'s database; `ValueError` for a store without SQL."""
        schema = getattr(store, "schema", None)
        if isinstance(schema, str):
            from psycopg import sql

            table = sql.Identifier(schema, "allocations_view").as_string(None)
            return cls(_Statements.of(table))
        if isinstance(getattr(store, "path", None), str):
            return cls(_Statements.of("allocations_view"))
        raise ValueError(
            "the allocations view is a table beside the log: it needs a SQLite or PostgreSQL store"
        )

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute(self._sql.create)

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute(self._sql.reset)

    @handles
    def allocated(
        self, event: Allocated, envelope: Envelope[Allocated], tx: ReadModelTransaction
    ) -> None:
        tx.execute(self._sql.upsert, (event.orderid, event.sku, event.batchref))

    @handles
    def deallocated(
        self, event: Deallocated, envelope: Envelope[Deallocated], tx: ReadModelTransaction
    ) -> None:
        tx.execute(self._sql.delete, (event.orderid, event.sku))


def projections(store: Any) -> list[Projection]:
    """The allocation service's projections over `store`: inline in its units of work, and
    for its runner (status, rebuild) and the CLI."""
    return [AllocationsProjection.for_store(store)]


class InMemoryAllocationsView:
    """Rows in a dict, brought up to date from `store`'s log on each read.

    Safe for the threads of one process. It reads only the events it has not
    applied yet, so a read costs as much as the events since the last one.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._codec = Codec(Allocated, Deallocated)
        self._rows: dict[tuple[str, str], str] = {}
        self._position = 0
        self._lock = threading.Lock()

    def for_order(self, orderid: str) -> list[AllocationRow]:
        with self._lock:
            self._catch_up()
            return [
                {"sku": sku, "batchref": batchref}
                for (order, sku), batchref in sorted(self._rows.items())
                if order == orderid
            ]

    def _catch_up(self) -> None:
        types = {Allocated.__event_type__, Deallocated.__event_type__}
        while records := self._store.read_all(after=self._position, limit=500, types=types):
            for record in records:
                event = self._codec.envelope(record).message
                if isinstance(event, Allocated):
                    self._rows[event.orderid, event.sku] = event.batchref
                elif isinstance(event, Deallocated):
                    self._rows.pop((event.orderid, event.sku), None)
            self._position = records[-1].position
