"""The composition root: builds the message bus with its dependencies, real or fake.

::

    bus = bootstrap()                                  # in memory, for a script or a test
    bus = bootstrap(uow=ProductsUnitOfWork(MemoryStore()), send_mail=fake_mail)   # a test
    bus = bootstrap(unit_of_work=lambda: SqlAlchemyProductsUnitOfWork(sessions, store),
                    views=SqlAllocationsView(engine))  # the service, see `database`
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from examples.allocation.domain import Product
from examples.allocation.handlers import SendMail, router
from examples.allocation.notifications import log_mail
from examples.allocation.unit_of_work import (
    AllocationUnitOfWork,
    InMemoryProductRepository,
    ProductsUnitOfWork,
)
from examples.allocation.views import AllocationsView, InMemoryAllocationsView
from tidings import EventStore, LogMessages, MemoryStore, MessageBus, Middleware, PerCall


def bootstrap(
    uow: ProductsUnitOfWork | None = None,
    send_mail: SendMail | None = None,
    store: EventStore | None = None,
    *,
    unit_of_work: Callable[[], AllocationUnitOfWork] | None = None,
    views: AllocationsView | None = None,
    retry_waits: bool = True,
    middleware: Sequence[Middleware] = (),
) -> MessageBus:
    """The allocation service's bus.

    With `unit_of_work`, every handler call gets a unit of work from it (the
    SQL service passes one over its database). Otherwise every call gets an
    in-memory one over `store`, all sharing one product table, so one bus
    serves concurrent requests. The products are then kept in memory, so the
    store is too unless one is given: a durable log beside volatile products
    would disagree after a restart. With `uow`, that one is used throughout,
    as tests do to look inside it. `views` is the read model: the SQL service
    passes the one its projection keeps; otherwise it is read from the log in
    memory. `middleware` runs inside the bus's logging.
    """
    mailer = send_mail if send_mail is not None else log_mail
    dependencies: dict[str | type, Any] = {"send_mail": mailer}
    if uow is not None and store is not None and store is not uow.store:
        raise ValueError("pass a unit of work or a store, not both")
    if unit_of_work is not None and (uow is not None or store is not None):
        raise ValueError("a unit of work factory brings its own store: pass it alone, not both")
    if uow is not None:
        dependencies["uow"] = uow
        dependencies["views"] = views if views is not None else InMemoryAllocationsView(uow.store)
    elif unit_of_work is not None:
        if views is None:
            raise ValueError("a unit of work factory needs the views its projection keeps")
        dependencies["uow"] = PerCall(unit_of_work)
        dependencies["views"] = views
    else:
        log = store if store is not None else MemoryStore()
        products: dict[str, Product] = {}
        dependencies["uow"] = PerCall(
            lambda: ProductsUnitOfWork(log, InMemoryProductRepository(products))
        )
        dependencies["views"] = views if views is not None else InMemoryAllocationsView(log)
    return MessageBus(
        router,
        dependencies=dependencies,
        middleware=[LogMessages(), *middleware],
        retry_waits=retry_waits,
    )
