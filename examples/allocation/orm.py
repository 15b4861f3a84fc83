"""The allocation tables, mapped imperatively onto the domain classes, which know nothing of them.

As in "Architecture Patterns with Python": `start_mappers()` maps `Product`,
`Batch` and `OrderLine` onto their tables, and the SQL repository loads and
saves them through a SQLAlchemy session. `products.version_number` is the
mapper's version column: a product changed by another request since it was
read fails the commit with `StaleAggregate`, a `ConcurrencyError`, and the
command runs again; so does one whose new product or batch reference a
concurrent request inserted first (`TakenMeanwhile`), and finds it then.
`MAX_TEXT` and `MAX_QUANTITY` are what the columns hold, on SQLite and
PostgreSQL alike: the HTTP schema accepts nothing larger. The read model
`allocations_view` lives in the same database: `views.AllocationsProjection`
creates it and writes it inline, in each unit of work's transaction, and
`SqlAllocationsView` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
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
    UniqueConstraint,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import registry, relationship

from examples.allocation.domain import Batch, OrderLine, Product
from examples.allocation.unit_of_work import ProductRepository
from examples.allocation.views import AllocationRow
from tidings import ConcurrencyError, Projection
from tidings.integrations.sqlalchemy import (
    JoinableStore,
    SqlAlchemyRepository,
    SqlAlchemyUnitOfWork,
)

MAX_TEXT = 255
"""The longest reference, SKU or order id a column holds, in characters."""

MAX_QUANTITY = 2**31 - 1
"""The largest quantity a column holds: PostgreSQL's INTEGER is 32 bits."""

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""Text without control characters: PostgreSQL cannot store a NUL, and a URL path
carries no line break, so an id holding one could be written but never read back."""

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(MAX_TEXT), primary_key=True),
    Column("version_number", Integer, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", String(MAX_TEXT), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False, index=True),
    Column("purchased_quantity", Integer, nullable=False),
    Column("eta", Date, nullable=True),
    # PostgreSQL's own name for it, so that tables made before it was named keep theirs.
    UniqueConstraint("reference", name="batches_reference_key"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("orderid", String(MAX_TEXT), nullable=False),
    Column("sku", String(MAX_TEXT), nullable=False),
    Column("qty", Integer, nullable=False),
)

allocations = Table(
    "allocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("orderline_id", ForeignKey("order_lines.id"), nullable=False),
    Column("batch_id", ForeignKey("batches.id"), nullable=False, index=True),
)

# The projection owns this table (it creates, empties and writes it); it is described
# here only to be queried, so it stays out of `metadata.create_all`.
read_models = MetaData()

allocations_view = Table(
    "allocations_view",
    read_models,
    Column("orderid", String(MAX_TEXT), primary_key=True),
    Column("sku", String(MAX_TEXT), primary_key=True),
    Column("batchref", String(MAX_TEXT), nullable=False),
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
                OrderLine, secondary=allocations, order_by=allocations.c.id, lazy="joined"
            ),
        },
    )
    mapper_registry.map_imperatively(
        Product,
        products,
        properties={
            "id": products.c.sku,
            "batches": relationship(Batch, order_by=batches.c.id, lazy="joined"),
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


class TakenMeanwhile(ConcurrencyError):
    """A product or batch reference this commit inserts was inserted by another request first.

    A conflict like a stale version: the command runs again, and then finds it.
    """


# The unique keys a concurrent insert can take first: PostgreSQL's constraint names,
# and the columns SQLite's message names.
_RACED_KEYS = frozenset(
    {"products_pkey", "batches_reference_key", "products.sku", "batches.reference"}
)


def _raced_key(error: sa_exc.IntegrityError) -> str | None:
    """The unique key a concurrent request took first, or None for any other violation."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name is None:  # SQLite: "UNIQUE constraint failed: batches.reference"
        name = str(error.orig).rpartition("constraint failed: ")[2]
    return name if name in _RACED_KEYS else None


class SqlAlchemyProductsUnitOfWork(SqlAlchemyUnitOfWork):
    """Products in SQL tables, their events in the log, in one transaction."""

    def __init__(
        self,
        session_factory: Any,
        store: JoinableStore,
        writers: AbstractContextManager[Any] | None = None,
        inline: Iterable[Projection] = (),
    ) -> None:
        super().__init__(session_factory, store, writers=writers, inline=inline)
        self.products = SqlAlchemyProductRepository(self, Product)

    def commit(self) -> None:
        try:
            super().commit()
        except sa_exc.IntegrityError as exc:
            key = _raced_key(exc)
            if key is None:
                raise
            raise TakenMeanwhile(f"{key} was inserted by another request first") from exc


class SqlAllocationsView:
    """Reads the `allocations_view` table that `views.AllocationsProjection` keeps."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

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
