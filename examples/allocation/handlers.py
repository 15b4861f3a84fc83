"""The service layer: one handler per command, and the reactions to events.

Handlers name what they need as parameters (`uow`, `send_mail`); the bus
binds them when it is built, so tests pass fakes the same way.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from examples.allocation.domain import Batch, InvalidBatch, InvalidSku, OrderLine, Product
from examples.allocation.messages import (
    Allocate,
    ChangeBatchQuantity,
    CreateBatch,
    Deallocated,
    OutOfStock,
)
from examples.allocation.unit_of_work import ProductsUnitOfWork
from tidings import Router

router = Router()


class SendMail(Protocol):
    """Sends one e-mail."""

    def __call__(self, *, to: str, subject: str, body: str) -> None: ...


STOCK_DESK = "stock@example.com"


@router.handler
def add_batch(cmd: CreateBatch, uow: ProductsUnitOfWork) -> None:
    eta = date.fromisoformat(cmd.eta) if cmd.eta is not None else None
    with uow:
        product = uow.products.get(cmd.sku)
        if product is None:
            product = Product(cmd.sku)
            uow.products.add(product)
        product.add_batch(Batch(cmd.ref, cmd.sku, cmd.qty, eta))
        uow.commit()


@router.handler
def allocate(cmd: Allocate, uow: ProductsUnitOfWork) -> str | None:
    """The reference of the batch the line went to; None when the SKU is out of stock."""
    line = OrderLine(cmd.orderid, cmd.sku, cmd.qty)
    with uow:
        product = uow.products.get(line.sku)
        if product is None:
            raise InvalidSku(f"Invalid sku {line.sku}")
        batchref = product.allocate(line)
        uow.commit()
    return batchref


@router.handler
def change_batch_quantity(cmd: ChangeBatchQuantity, uow: ProductsUnitOfWork) -> None:
    with uow:
        product = uow.products.get_by_batchref(cmd.ref)
        if product is None:
            raise InvalidBatch(f"Invalid batch {cmd.ref}")
        product.change_batch_quantity(cmd.ref, cmd.qty)
        uow.commit()


@router.handler
def reallocate(event: Deallocated, uow: ProductsUnitOfWork) -> None:
    """A line a batch gave up is allocated again, as a new `Allocate` command."""
    allocate(Allocate(event.orderid, event.sku, event.qty), uow)


@router.handler
def send_out_of_stock_notification(event: OutOfStock, send_mail: SendMail) -> None:
    send_mail(
        to=STOCK_DESK,
        subject=f"Out of stock: {event.sku}",
        body=f"The SKU {event.sku} is out of stock.",
    )
