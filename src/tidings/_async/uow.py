"""The unit of work: one transaction for the state that changed and the events it recorded."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from tidings._async.turns import AsyncHeldTurns, turns_of
from tidings.codec import Codec
from tidings.context import current_dispatch
from tidings.domain import Aggregate, EventSourced
from tidings.errors import EventDecodeError, UnitOfWorkStateError
from tidings.messages import Envelope, Event, new_id, utc_now
from tidings.observability import hooks
from tidings.observability.hooks import Loading, Publishing
from tidings.projections._async.inline import AsyncInlineProjections
from tidings.projections.projection import Projection
from tidings.snapshots import SnapshotCodec, snapshot_codec
from tidings.store._async.base import (
    AsyncEventStore,
    AsyncReadModelTransaction,
    AsyncStoreTransaction,
)
from tidings.store.records import ExpectedVersion, Snapshot, StreamState

__all__ = ["AsyncEventSourcedRepository", "AsyncRepository", "AsyncUnitOfWork"]

A = TypeVar("A", bound=Aggregate)
ES = TypeVar("ES", bound=EventSourced)


# Orders aggregates across repositories: events are stored in the order aggregates were met.
_tracking = itertools.count()

logger = logging.getLogger(__name__)


class AsyncRepository(Generic[A]):
    """Base for repositories: remembers the aggregates it handed out, so their events get stored.

    Subclasses implement `_add` and `_get` (as in "Architecture Patterns with Python").
    In a unit of work, `get` first waits for the aggregate's turn (see
    `tidings._async.turns`): another block of this process that loaded it
    ends first, so this one loads what that block committed.
    """

    def __init__(self) -> None:
        self.seen: list[A] = []
        self._met: dict[int, int] = {}
        self._turns: AsyncHeldTurns | None = None

    async def add(self, aggregate: A) -> None:
        await self._add(aggregate)
        self._track(aggregate)

    async def get(self, aggregate_id: Any) -> A | None:
        """The aggregate with this id, or None."""
        if self._turns is not None:
            await self._turns.take(self._turn_key(aggregate_id))
        aggregate = await self._get(aggregate_id)
        if aggregate is not None:
            self._track(aggregate)
        return aggregate

    async def _add(self, aggregate: A) -> None:
        raise NotImplementedError

    async def _get(self, aggregate_id: Any) -> A | None:
        raise NotImplementedError

    def _turn_key(self, aggregate_id: Any) -> Hashable:
        """What names the aggregate among all those loaded through the store."""
        return (type(self), aggregate_id)

    def _track(self, aggregate: A) -> None:
        if id(aggregate) not in self._met:
            self._met[id(aggregate)] = next(_tracking)
            self.seen.append(aggregate)

    def _forget(self) -> None:
        self.seen.clear()
        self._met.clear()


class AsyncEventSourcedRepository(AsyncRepository[ES]):
    """Loads event-sourced aggregates from their streams, inside a unit of work's transaction.

    A type that sets `snapshot_every` starts from its stream's latest snapshot
    and replays only the events after it; a snapshot of another shape is
    ignored and the whole stream replayed. The aggregate's version is that of
    the last event read, which after a soft delete and revival is not the
    number of events replayed.
    """

    def __init__(self, uow: AsyncUnitOfWork, aggregate_type: type[ES]) -> None:
        super().__init__()
        self._uow = uow
        self._type = aggregate_type

    async def _add(self, aggregate: ES) -> None:
        if not isinstance(aggregate, self._type):
            raise TypeError(f"expected {self._type.__name__}, got {type(aggregate).__name__}")

    def _turn_key(self, aggregate_id: Any) -> Hashable:
        return self._type.stream_for(aggregate_id)

    async def _get(self, aggregate_id: Any) -> ES | None:
        stream = self._type.stream_for(aggregate_id)
        with hooks.loading(self._type.__name__, stream) as loading:
            return await self._load(stream, aggregate_id, loading)

    async def _load(self, stream: str, aggregate_id: Any, loading: Loading) -> ES | None:
        if self._uow.lock_on_load:
            await self._uow.transaction.lock_stream(stream)
        aggregate = await self._from_snapshot(stream, aggregate_id)
        records = await self._uow.transaction.read_stream(
            stream, from_version=None if aggregate is None else aggregate.version + 1
        )
        if aggregate is None:
            if not records:
                loading.loaded(None, 0)
                return None
            aggregate = self._type(str(aggregate_id))
        codec = self._uow.codec
        for record in records:
            try:
                event = codec.decode(record.type, record.schema_version, record.data)
            except EventDecodeError as exc:
                exc.locate(record.stream, record.version, record.position)
                raise
            aggregate._apply(event)
        if records:
            aggregate.version = records[-1].version
        loading.loaded(aggregate.version, len(records))
        return aggregate

    async def _from_snapshot(self, stream: str, aggregate_id: Any) -> ES | None:
        """The aggregate as its latest usable snapshot left it, or None."""
        snapshots = snapshot_codec(self._type)
        if snapshots is None:
            return None
        snapshot = await self._uow.store.read_snapshot(stream)
        if snapshot is None:
            return None
        aggregate = self._type(str(aggregate_id))
        return aggregate if snapshots.restore(aggregate, snapshot) else None


class AsyncUnitOfWork:
    """Commits the state that changed and the events it recorded in one store transaction.

    ::

        async with uow:
            order = await uow.repository(Order).get(order_id)
            order.confirm()
            await uow.commit()

    Leaving the block without `commit` rolls everything back. Committed events
    are available from `collect_new_events()`; inside a bus handler the bus
    collects them itself and handles them after the current message.
    Subclasses add repositories as attributes (state-stored aggregates), and
    `repository(SomeEventSourced)` gives the one for an event-sourced type.

    Snapshots due at a commit (see `EventSourced.snapshot_every`) are saved
    when the block ends, each in a store call of its own: a snapshot only
    spares replaying, so it never holds the commit's transaction (and its
    locks) longer, and failing to save one is logged, never raised into the
    command that committed. Loading from an older snapshot, or none, is
    merely slower.

    `inline` projections are applied to the events appended, in the
    transaction that stores them (see `tidings.projections._async.inline`):
    their read model is up to date the moment `commit` returns, and a
    failing handler raises `InlineProjectionFailed` and keeps nothing. They
    are set up (`setup`) once per store, before the first block opens.

    Blocks of this process that load the same aggregate take turns: a block
    that loads one another block holds waits until that block ends, up to
    `wait_for_aggregate` seconds, then goes on without its turn (see
    `tidings._async.turns`). On one hot aggregate this replaces conflicts and
    retries by a queue; `wait_for_aggregate=None` turns it off. Blocks in
    other processes still meet as conflicts, unless `lock_on_load` is set:
    then loading an event-sourced aggregate first locks its stream for the
    rest of the transaction (`lock_stream`), so a block of another process
    that loads it waits until this one ends and then reads what it
    committed. That suits several processes writing one hot aggregate on
    PostgreSQL; it costs a statement per load, and two blocks that lock two
    aggregates in opposite orders deadlock, which PostgreSQL breaks by
    failing one with `ConcurrencyError` for the bus to retry.
    """

    def __init__(
        self,
        store: AsyncEventStore,
        *,
        codec: Codec | None = None,
        inline: Iterable[Projection[AsyncReadModelTransaction]] = (),
        wait_for_aggregate: float | None = 5.0,
        lock_on_load: bool = False,
    ) -> None:
        if wait_for_aggregate is not None and wait_for_aggregate < 0:
            raise ValueError(f"wait_for_aggregate must be >= 0 or None, not {wait_for_aggregate}")
        self.store = store
        self.lock_on_load = lock_on_load
        self._wait_for_aggregate = wait_for_aggregate
        self._turns: AsyncHeldTurns | None = None
        self.codec = codec or Codec()
        inline = list(inline)
        self._inline = AsyncInlineProjections(store, inline) if inline else None
        self._context: AbstractAsyncContextManager[AsyncStoreTransaction] | None = None
        self._transaction: AsyncStoreTransaction | None = None
        self._finished = False
        self._event_sourced: dict[type[EventSourced], AsyncEventSourcedRepository[Any]] = {}
        self._new_events: list[Envelope[Event]] = []
        self._snapshots: list[Snapshot] = []

    @property
    def transaction(self) -> AsyncStoreTransaction:
        """The store transaction of the open block; repositories write through it."""
        if self._transaction is None:
            raise UnitOfWorkStateError("the unit of work is not open: use it as `async with uow:`")
        return self._transaction

    def repository(self, aggregate_type: type[ES]) -> AsyncEventSourcedRepository[ES]:
        """The repository of an event-sourced aggregate type, in this unit of work."""
        repository = self._event_sourced.get(aggregate_type)
        if repository is None:
            repository = AsyncEventSourcedRepository(self, aggregate_type)
            repository._turns = self._turns
            self._event_sourced[aggregate_type] = repository
        return repository

    def begin(self) -> AbstractAsyncContextManager[AsyncStoreTransaction]:
        """The transaction a block runs in: the store's; override to run in another one."""
        return self.store.transaction()

    async def __aenter__(self) -> Self:
        if self._transaction is not None:
            raise UnitOfWorkStateError(
                "the unit of work is already open: one serves one block at a time; give each "
                "handler call its own with `PerCall(lambda: UnitOfWork(store))`"
            )
        if self._wait_for_aggregate is not None:
            self._turns = turns_of(self.store).block(self._wait_for_aggregate)
        for repository in self._repositories():
            repository._forget()
            repository._turns = self._turns
        self._finished = False
        if self._inline is not None:
            await self._inline.prepare()
        context = self.begin()
        self._transaction = await context.__aenter__()
        self._context = context
        dispatch = current_dispatch()
        if dispatch is not None:
            dispatch.enlist(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context, self._context = self._context, None
        transaction, self._transaction = self._transaction, None
        if context is None or transaction is None:
            return
        try:
            if not self._finished:
                await transaction.rollback()
        finally:
            try:
                await context.__aexit__(exc_type, exc, traceback)
            finally:
                self._give_back_turns()
            await self._save_snapshots()

    async def commit(self) -> None:
        """Append every tracked aggregate's new events and commit the transaction."""
        with hooks.publishing() as publishing:
            await self._commit(publishing)

    async def _commit(self, publishing: Publishing) -> None:
        transaction = self.transaction
        if self._finished:
            raise UnitOfWorkStateError(
                "this block has already committed or rolled back; open the unit of work again"
            )
        dispatch = current_dispatch()
        cause = dispatch.envelope if dispatch is not None else None
        correlation_id = cause.correlation_id if cause is not None else new_id()
        causation_id = cause.message_id if cause is not None else None
        stored: list[Envelope[Event]] = []
        due: list[tuple[EventSourced, SnapshotCodec]] = []
        for aggregate in self._aggregates():
            expected: ExpectedVersion = StreamState.ANY
            if isinstance(aggregate, EventSourced):
                expected = aggregate.committed_version
            events = aggregate.collect_events()
            if not events:
                continue
            now = utc_now()
            envelopes = [
                Envelope(event, new_id(), correlation_id, causation_id, now, publishing.headers())
                for event in events
            ]
            result = await transaction.append(
                aggregate.stream, [self.codec.new_event(e) for e in envelopes], expected
            )
            publishing.appended(aggregate.stream, len(envelopes))
            first_version = result.version - len(envelopes) + 1
            stored.extend(
                envelope.stored(aggregate.stream, first_version + i, result.positions[i])
                for i, envelope in enumerate(envelopes)
            )
            if isinstance(aggregate, EventSourced):
                # A revived stream numbers on from its last version, not from the aggregate's.
                aggregate.version = result.version
                snapshots = snapshot_codec(type(aggregate))
                if snapshots is not None and snapshots.due(first_version - 1, result.version):
                    due.append((aggregate, snapshots))
        if self._inline is not None and stored:
            await self._inline.apply(transaction, stored)
        await transaction.commit()
        self._finished = True
        self._new_events.extend(stored)
        for aggregate, snapshots in due:
            try:
                self._snapshots.append(snapshots.take(aggregate))
            except Exception:
                logger.exception("cannot take a snapshot of %s", aggregate.stream)

    async def rollback(self) -> None:
        """Discard everything done in this block."""
        await self.transaction.rollback()
        self._finished = True

    def _give_back_turns(self) -> None:
        turns, self._turns = self._turns, None
        if turns is not None:
            turns.release()
        for repository in self._repositories():
            repository._turns = None

    async def _save_snapshots(self) -> None:
        snapshots, self._snapshots = self._snapshots, []
        for snapshot in snapshots:
            try:
                await self.store.save_snapshot(snapshot)
            except Exception:
                logger.exception(
                    "cannot save the snapshot of %s at version %d; loading it replays more events",
                    snapshot.stream,
                    snapshot.version,
                )

    def collect_new_events(self) -> list[Envelope[Event]]:
        """Take the events committed since the last call, in commit order."""
        taken, self._new_events = self._new_events, []
        return taken

    def _repositories(self) -> list[AsyncRepository[Any]]:
        found = [value for value in vars(self).values() if isinstance(value, AsyncRepository)]
        found.extend(self._event_sourced.values())
        return found

    def _aggregates(self) -> list[Aggregate]:
        met = [
            (repository._met[id(aggregate)], aggregate)
            for repository in self._repositories()
            for aggregate in repository.seen
        ]
        return [aggregate for _, aggregate in sorted(met, key=lambda pair: pair[0])]
