"""The allocation tables, mapped imperatively onto the domain classes, which know nothing of them.

As in "Architecture Patterns with Python": `start_mappers()` maps `Product`,
`Batch` and `OrderLine` onto their tables, and the SQL repository loads and
saves them through a SQLAlchemy session. `products.version_number` is the
mapper's version column: a product changed by another request since it was
read fails the commit with `StaleAggregate`, a `ConcurrencyError`, and the
command runs again. The read model `allocations_view` lives in the same
database; the event handlers write it through `SqlAllocationsView`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import registry, relationship

from examples.allocation.domain import Batch, OrderLine, Product
from examples.allocation.unit_of_work import ProductRepository
from examples.allocation.views import AllocationRow
from tidings.integrations.sqlalchemy import (
    JoinableStore,
    SqlAlchemyRepository,
    SqlAlchemyUnitOfWork,
)

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(255), primary_key=True),
    Column("version_number", Integer, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", String(255), nullable=False, unique=True),
    Column("sku", ForeignKey("products.sku"), nullable=False, index=True),
    Column("purchased_quantity", Integer, nullable=False),
    Column("eta", Date, nullable=True),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("orderid", String(255), nullable=False),
    Column("sku", String(255), nullable=False),
    Column("qty", Integer, nullable=False),
)

allocations = Table(
    "allocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("orderline_id", ForeignKey("order_lines.id"), nullable=False),
    Column("batch_id", ForeignKey("batches.id"), nullable=False, index=True),
)

allocations_view = Table(
    "allocations_view",
    metadata,
    Column("orderid", String(255), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("batchref", String(255), nullable=False),
)

mapper_registry = registry()


def start_mappers() -> None:
    """Map the domain classes onto the tables, once per process."""
    if sa_inspect(Product, raiseerr=False) is not None:
        return
    mapper_registry.map_imperatively(OrderLine, order_lines)
    mapper_registry.map_imperatively(
        Batch,
        batches,
        properties={
            "_purchased_quantity": batches.c.purchased_quantity,
            # Allocation order is kept, so the latest line is the first to give way.
            "_allocations": relationship(
                OrderLine, secondary=allocations, order_by=allocations.c.id, lazy="selectin"
            ),
        },
    )
    mapper_registry.map_imperatively(
        Product,
        products,
        properties={
            "id": products.c.sku,
            "batches": relationship(Batch, order_by=batches.c.id, lazy="selectin"),
        },
        version_id_col=products.c.version_number,
        # The domain counts versions itself; the mapper checks and writes its count.
        version_id_generator=False,
    )


def clear_mappers() -> None:
    """Undo `start_mappers`, for tests that use the domain classes unmapped afterwards."""
    mapper_registry.dispose()


class SqlAlchemyProductRepository(SqlAlchemyRepository[Product], ProductRepository):
    """Products in the unit of work's session; changes are flushed at commit, not saved here."""

    def _get_by_batchref(self, batchref: str) -> Product | None:
        query = (
            select(Product)
            .join(batches, batches.c.sku == products.c.sku)
            .where(batches.c.reference == batchref)
        )
        return self.uow.session.scalars(query).first()

    def _save(self, product: Product) -> None:
        pass  # the session tracks the mapped objects it loaded


class SqlAlchemyProductsUnitOfWork(SqlAlchemyUnitOfWork):
    """Products in SQL tables, their events in the log, in one transaction."""

    def __init__(
        self,
        session_factory: Any,
        store: JoinableStore,
        writers: AbstractContextManager[Any] | None = None,
    ) -> None:
        super().__init__(session_factory, store, writers=writers)
        self.products = SqlAlchemyProductRepository(self, Product)


class SqlAllocationsView:
    """The `allocations_view` table; each call is a transaction of its own.

    `writers` is the process's SQLite write lock, shared with the units of work.
    """

    def __init__(self, engine: Engine, writers: AbstractContextManager[Any] | None = None) -> None:
        self._engine = engine
        self._writers = writers if writers is not None else nullcontext()

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        with self._writers, self._engine.begin() as connection:
            connection.execute(delete(allocations_view).where(_row(orderid, sku)))
            connection.execute(
                insert(allocations_view).values(orderid=orderid, sku=sku, batchref=batchref)
            )

    def remove(self, orderid: str, sku: str) -> None:
        with self._writers, self._engine.begin() as connection:
            connection.execute(delete(allocations_view).where(_row(orderid, sku)))

    def for_order(self, orderid: str) -> list[AllocationRow]:
        query = (
            select(allocations_view.c.sku, allocations_view.c.batchref)
            .where(allocations_view.c.orderid == orderid)
            .order_by(allocations_view.c.sku)
        )
        with self._engine.connect() as connection:
            return [
                {"sku": sku, "batchref": batchref} for sku, batchref in connection.execute(query)
            ]


def _row(orderid: str, sku: str) -> Any:
    return and_(allocations_view.c.orderid == orderid, allocations_view.c.sku == sku)
