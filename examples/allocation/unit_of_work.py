"""Where products are kept, and the unit of work that commits them with their events.

`ProductRepository` is the seam between the service layer and storage: a
backend implements `_add`, `_get`, `_get_by_batchref` and `_save`. The one
here keeps products in a dict; the SQL one (`orm.SqlAlchemyProductRepository`)
works in a SQLAlchemy session whose transaction carries the events too, so
rows and events commit together. Handlers accept either unit of work: both
are an `AllocationUnitOfWork`.
"""

from __future__ import annotations

import copy
from types import TracebackType
from typing import Any, Protocol, Self

from examples.allocation.domain import Product
from tidings import EventStore, Repository, UnitOfWork


class AllocationUnitOfWork(Protocol):
    """A unit of work with a `products` repository, in memory or in SQL."""

    @property
    def products(self) -> ProductRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class ProductRepository(Repository[Product]):
    """Products by SKU or by the reference of one of their batches."""

    def get_by_batchref(self, batchref: str) -> Product | None:
        """The product that holds the batch `batchref`, or None."""
        product = self._get_by_batchref(batchref)
        if product is not None:
            self._track(product)
        return product

    def save_seen(self) -> None:
        """Write back every product handed out or added since the unit of work opened."""
        for product in self.seen:
            self._save(product)

    def _get_by_batchref(self, batchref: str) -> Product | None:
        raise NotImplementedError

    def _save(self, product: Product) -> None:
        raise NotImplementedError


class InMemoryProductRepository(ProductRepository):
    """Keeps products in a dict, shared by every repository made with the same one.

    It hands out copies and stores them back at commit, so changes made in a
    unit of work that rolls back are discarded, as a database would. A product
    added is stored at once (tests seed products this way, outside any unit
    of work).
    """

    def __init__(self, products: dict[str, Product] | None = None) -> None:
        super().__init__()
        self.products = products if products is not None else {}

    def _add(self, product: Product) -> None:
        self.products[product.sku] = _stored(product)

    def _get(self, aggregate_id: Any) -> Product | None:
        product = self.products.get(aggregate_id)
        return copy.deepcopy(product) if product is not None else None

    def _get_by_batchref(self, batchref: str) -> Product | None:
        for product in self.products.values():
            if any(batch.reference == batchref for batch in product.batches):
                return copy.deepcopy(product)
        return None

    def _save(self, product: Product) -> None:
        self.products[product.sku] = _stored(product)


def _stored(product: Product) -> Product:
    # Events leave with the commit; the stored copy must not hand them out again.
    stored = copy.deepcopy(product)
    stored.collect_events()
    return stored


class ProductsUnitOfWork(UnitOfWork):
    """A unit of work with a `products` repository (in memory unless one is given)."""

    def __init__(self, store: EventStore, products: ProductRepository | None = None) -> None:
        super().__init__(store)
        self.products = products if products is not None else InMemoryProductRepository()

    def commit(self) -> None:
        self.products.save_seen()
        super().commit()
