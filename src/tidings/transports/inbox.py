"""The inbox: the ids of the messages a consumer has handled, beside its store's log.

A broker delivers at least once, so a consumer may receive a message again:
after a crash before its ack, or when the relay published it twice. The
inbox is a table in the consumer's own store database (`tidings_inbox`,
`<schema>.inbox`) keyed by consumer and message id. A unit of work that
records the id in the transaction that commits the handler's effects
(`AsyncInboxUnitOfWork`) makes those effects happen once per message,
however often it is delivered.
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from tidings._async.uow import AsyncUnitOfWork
from tidings.codec import Codec
from tidings.context import current_dispatch
from tidings.errors import TidingsError
from tidings.messages import utc_now
from tidings.sidetables import dialect_of
from tidings.sidetables._async.made import AsyncSideTable
from tidings.sidetables._async.statements import execute, execute_count
from tidings.store._async.base import AsyncEventStore, AsyncStoreWriter

__all__ = ["AlreadyHandled", "AsyncInbox", "AsyncInboxUnitOfWork"]

_CREATE = """
CREATE TABLE IF NOT EXISTS {inbox} (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id)
)"""
_RECORD = (
    "INSERT INTO {inbox} (consumer, message_id, handled_at) VALUES (?, ?, ?)"
    " ON CONFLICT (consumer, message_id) DO NOTHING"
)
_SEEN = "SELECT 1 FROM {inbox} WHERE consumer = ? AND message_id = ?"
_SEEN_AMONG = "SELECT message_id FROM {inbox} WHERE consumer = ? AND message_id IN ({marks})"
_RECORD_ALL = (
    "INSERT INTO {inbox} (consumer, message_id, handled_at) VALUES {rows}"
    " ON CONFLICT (consumer, message_id) DO NOTHING"
)
_COUNT = "SELECT count(*) FROM {inbox} WHERE consumer = ?"


class AlreadyHandled(TidingsError):
    """Another delivery of this message recorded it first: this one's effects are rolled back."""

    def __init__(self, consumer: str, message_id: UUID) -> None:
        self.consumer = consumer
        self.message_id = message_id
        super().__init__(f"consumer {consumer!r} has already handled message {message_id}")


class AsyncInbox:
    """The messages consumer `consumer` has handled, in its SQLite or PostgreSQL store."""

    def __init__(self, store: AsyncEventStore, consumer: str) -> None:
        if not consumer:
            raise ValueError("an inbox needs the name of its consumer")
        self.store = store
        self.consumer = consumer
        self._dialect = dialect_of(store)
        self._table = AsyncSideTable(store, self._create)

    async def prepare(self) -> None:
        """Create the table if missing."""
        async with self._table.transaction():
            pass

    async def record(self, message_id: UUID, *, tx: AsyncStoreWriter | None = None) -> bool:
        """Record `message_id` as handled (in `tx`, if given); False if it was already."""
        values = [self.consumer, str(message_id), utc_now().isoformat()]
        async with self._table.transaction(tx) as active:
            return await execute_count(active, self._sql(_RECORD), values) > 0

    async def seen(self, message_id: UUID) -> bool:
        """Whether `message_id` is recorded as handled."""
        async with self._table.transaction() as tx:
            rows = await execute(tx, self._sql(_SEEN), [self.consumer, str(message_id)])
        return bool(rows)

    async def record_all(self, message_ids: Collection[UUID]) -> int:
        """Record every one of `message_ids` as handled, in one transaction; how many were new."""
        if not message_ids:
            return 0
        now = utc_now().isoformat()
        values = [v for message_id in message_ids for v in (self.consumer, str(message_id), now)]
        rows = ", ".join(["(?, ?, ?)"] * len(message_ids))
        sql = self._dialect.sql(_RECORD_ALL.replace("{rows}", rows), inbox="inbox")
        async with self._table.transaction() as tx:
            return await execute_count(tx, sql, values)

    async def seen_among(self, message_ids: Collection[UUID]) -> set[UUID]:
        """Which of `message_ids` are recorded as handled, in one query."""
        if not message_ids:
            return set()
        marks = ", ".join(["?"] * len(message_ids))
        sql = self._dialect.sql(_SEEN_AMONG.replace("{marks}", marks), inbox="inbox")
        async with self._table.transaction() as tx:
            rows = await execute(tx, sql, [self.consumer, *map(str, message_ids)])
        return {UUID(row[0]) for row in rows}

    async def count(self) -> int:
        """How many messages this consumer has recorded as handled."""
        async with self._table.transaction() as tx:
            rows = await execute(tx, self._sql(_COUNT), [self.consumer])
        return int(rows[0][0])

    async def _create(self, tx: AsyncStoreWriter) -> None:
        lock = self._dialect.creation_lock
        if lock is not None:
            await execute(tx, lock, ["tidings inbox"])
        await execute(tx, self._sql(_CREATE))

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template, inbox="inbox")


@dataclass(slots=True)
class Receiving:
    """The message a consumer is handing to its bus now, and whether its id is recorded yet."""

    inbox: AsyncInbox
    message_id: UUID
    recorded: bool = False


receiving: ContextVar[Receiving | None] = ContextVar("tidings_receiving", default=None)


class AsyncInboxUnitOfWork(AsyncUnitOfWork):
    """A unit of work that records the received message in its inbox, in the same transaction.

    Used by a handler of a message an `AsyncBrokerConsumer` received, its
    commit also records the message's id in `inbox`: the effects and the
    record commit together or not at all. When another delivery of the same
    message recorded it first (two deliveries handled at once), the commit
    rolls back and raises `AlreadyHandled`, so the effects are never kept
    twice. Several handlers of one message may each commit through one:
    the first records it, the others find it recorded by this delivery.
    Anywhere else (a handler of an event committed while handling, a dead
    letter retried later) it is a plain unit of work.
    """

    def __init__(
        self, store: AsyncEventStore, inbox: AsyncInbox, *, codec: Codec | None = None
    ) -> None:
        super().__init__(store, codec=codec)
        self.inbox = inbox

    async def commit(self) -> None:
        current = receiving.get()
        dispatch = current_dispatch()
        if (
            current is None
            or current.inbox is not self.inbox
            or dispatch is None
            or dispatch.envelope.message_id != current.message_id
        ):
            await super().commit()
            return
        fresh = await self.inbox.record(current.message_id, tx=self.transaction)
        if not fresh and not current.recorded:
            await self.rollback()
            raise AlreadyHandled(self.inbox.consumer, current.message_id)
        await super().commit()
        current.recorded = True
