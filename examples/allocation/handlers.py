"""The service layer: one handler per command and query, and the reactions to events.

Handlers name what they need as parameters (`uow`, `send_mail`, `views`);
the bus binds them when it is built, so tests pass fakes the same way. The
commands that change a product run again, with a fresh unit of work, when
another request changed that product first (`ConcurrencyError`), which is
also how a batch reference taken by a concurrent request is found. The read
model is not kept here: it is a projection of the log (see `views`).
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from examples.allocation.domain import (
    Batch,
    DuplicateBatch,
    InvalidBatch,
    InvalidSku,
    OrderLine,
    Product,
)
from examples.allocation.messages import (
    Allocate,
    ChangeBatchQuantity,
    CreateBatch,
    Deallocated,
    GetAllocations,
    OutOfStock,
)
from examples.allocation.unit_of_work import AllocationUnitOfWork
from examples.allocation.views import AllocationRow, AllocationsView
from tidings import ConcurrencyError, Retry, Router

router = Router()

ON_CONFLICT = Retry(attempts=10, first_delay=0.01, max_delay=0.2, on=(ConcurrencyError,))


class SendMail(Protocol):
    """Sends one e-mail."""

    def __call__(self, *, to: str, subject: str, body: str) -> None: ...


STOCK_DESK = "stock@example.com"


@router.handler(retry=ON_CONFLICT)
def add_batch(cmd: CreateBatch, uow: AllocationUnitOfWork) -> None:
    eta = date.fromisoformat(cmd.eta) if cmd.eta is not None else None
    with uow:
        if uow.products.get_by_batchref(cmd.ref) is not None:
            raise DuplicateBatch(f"Batch {cmd.ref} exists already")
        product = uow.products.get(cmd.sku)
        if product is None:
            product = Product(cmd.sku)
            uow.products.add(product)
        product.add_batch(Batch(cmd.ref, cmd.sku, cmd.qty, eta))
        uow.commit()


@router.handler(retry=ON_CONFLICT)
def allocate(cmd: Allocate, uow: AllocationUnitOfWork) -> str | None:
    """The reference of the batch the line went to; None when the SKU is out of stock."""
    line = OrderLine(cmd.orderid, cmd.sku, cmd.qty)
    with uow:
        product = uow.products.get(line.sku)
        if product is None:
            raise InvalidSku(f"Invalid sku {line.sku}")
        batchref = product.allocate(line)
        uow.commit()
    return batchref


@router.handler(retry=ON_CONFLICT)
def change_batch_quantity(cmd: ChangeBatchQuantity, uow: AllocationUnitOfWork) -> None:
    with uow:
        product = uow.products.get_by_batchref(cmd.ref)
        if product is None:
            raise InvalidBatch(f"Invalid batch {cmd.ref}")
        product.change_batch_quantity(cmd.ref, cmd.qty)
        uow.commit()


@router.handler
def reallocate(event: Deallocated, uow: AllocationUnitOfWork) -> None:
    """A line a batch gave up is allocated again, as a new `Allocate` command."""
    allocate(Allocate(event.orderid, event.sku, event.qty), uow)


@router.handler
def allocations(query: GetAllocations, views: AllocationsView) -> list[AllocationRow]:
    return views.for_order(query.orderid)


@router.handler
def send_out_of_stock_notification(event: OutOfStock, send_mail: SendMail) -> None:
    send_mail(
        to=STOCK_DESK,
        subject=f"Out of stock: {event.sku}",
        body=f"The SKU {event.sku} is out of stock.",
    )
