"""The composition root: builds the message bus with its dependencies, real or fake.

::

    bus = bootstrap()                                  # production defaults
    bus = bootstrap(uow=ProductsUnitOfWork(MemoryStore()), send_mail=fake_mail)   # a test
"""

from __future__ import annotations

from typing import Any

from examples.allocation.domain import Product
from examples.allocation.handlers import SendMail, router
from examples.allocation.notifications import log_mail
from examples.allocation.unit_of_work import InMemoryProductRepository, ProductsUnitOfWork
from tidings import EventStore, LogMessages, MemoryStore, MessageBus, PerCall


def bootstrap(
    uow: ProductsUnitOfWork | None = None,
    send_mail: SendMail | None = None,
    store: EventStore | None = None,
    *,
    retry_waits: bool = True,
) -> MessageBus:
    """The allocation service's bus.

    Without `uow`, every handler call gets its own unit of work over `store`,
    all sharing one product table, so one bus serves concurrent requests. The
    products are kept in memory, so the store is too unless one is given: a
    durable log beside volatile products would disagree after a restart.
    With `uow`, that one is used throughout, as tests do to look inside it.
    """
    mailer = send_mail if send_mail is not None else log_mail
    dependencies: dict[str | type, Any] = {"send_mail": mailer}
    if uow is not None:
        if store is not None and store is not uow.store:
            raise ValueError("pass a unit of work or a store, not both")
        dependencies["uow"] = uow
    else:
        log = store if store is not None else MemoryStore()
        products: dict[str, Product] = {}
        dependencies["uow"] = PerCall(
            lambda: ProductsUnitOfWork(log, InMemoryProductRepository(products))
        )
    return MessageBus(
        router, dependencies=dependencies, middleware=[LogMessages()], retry_waits=retry_waits
    )
