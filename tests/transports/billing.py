"""The consuming service of the transport tests: it bills each order placed, in its own store.

Billing an order inserts a row into `billed`, committed by an inbox unit of
work together with the received message's id. The table has no unique key,
so billing a message twice shows as two rows: the effects themselves tell
whether each message was handled exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.transports.app import CODEC, OrderPlaced
from tidings import AsyncMessageBus, AsyncMiddleware, Envelope, PerCall, Retry, Router
from tidings.dead_letters import AsyncSQLDeadLetters
from tidings.sidetables import dialect_of
from tidings.sidetables._async.statements import execute
from tidings.transports.inbox import AsyncInbox, AsyncInboxUnitOfWork

router = Router()


@router.handler(retry=Retry(attempts=2, first_delay=0))
async def bill(
    event: OrderPlaced, envelope: Envelope[OrderPlaced], uow: AsyncInboxUnitOfWork
) -> None:
    if event.order == "unbillable":
        raise ValueError("this order cannot be billed")
    async with uow:
        dialect = dialect_of(uow.store)
        await execute(
            uow.transaction,
            dialect.sql("INSERT INTO {billed} (message_id, amount) VALUES (?, ?)", billed="billed"),
            [str(envelope.message_id), event.amount],
        )
        await uow.commit()


async def prepare(store: Any) -> None:
    dialect = dialect_of(store)
    async with store.transaction() as tx:
        await execute(
            tx,
            dialect.sql(
                "CREATE TABLE IF NOT EXISTS {billed} (message_id TEXT NOT NULL, amount INTEGER)",
                billed="billed",
            ),
        )


async def billed(store: Any) -> list[str]:
    """The message id of every row billed, in no particular order."""
    dialect = dialect_of(store)
    async with store.transaction() as tx:
        rows = await execute(tx, dialect.sql("SELECT message_id FROM {billed}", billed="billed"))
    return [str(row[0]) for row in rows]


def billing_bus(
    store: Any, inbox: AsyncInbox, middleware: Sequence[AsyncMiddleware] = ()
) -> AsyncMessageBus:
    return AsyncMessageBus(
        router,
        dependencies={"uow": PerCall(lambda: AsyncInboxUnitOfWork(store, inbox, codec=CODEC))},
        retry_waits=False,
        middleware=middleware,
        dead_letters=AsyncSQLDeadLetters(store, codec=CODEC),
    )
