"""The composition root: builds the orders service's bus with its dependencies, real or fake."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from examples.orders.handlers import Clock, router
from examples.orders.views import OrderList
from tidings import EventStore, LogMessages, MemoryStore, MessageBus, PerCall, UnitOfWork


def utc_now() -> datetime:
    return datetime.now(UTC)


def bootstrap(
    uow: UnitOfWork | None = None,
    store: EventStore | None = None,
    clock: Clock | None = None,
    order_list: OrderList | None = None,
    *,
    retry_waits: bool = True,
) -> MessageBus:
    """The orders service's bus.

    Without `uow`, every handler call gets its own unit of work over `store`
    (in memory unless given), so one bus serves concurrent requests. The
    order list read model starts empty unless one is given.
    """
    dependencies: dict[str | type, Any] = {
        "clock": clock if clock is not None else utc_now,
        "order_list": order_list if order_list is not None else OrderList(),
    }
    if uow is not None:
        if store is not None and store is not uow.store:
            raise ValueError("pass a unit of work or a store, not both")
        dependencies["uow"] = uow
    else:
        log = store if store is not None else MemoryStore()
        dependencies["uow"] = PerCall(lambda: UnitOfWork(log))
    return MessageBus(
        router, dependencies=dependencies, middleware=[LogMessages()], retry_waits=retry_waits
    )
