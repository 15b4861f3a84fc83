# Generated from src/tidings/_async/uow.py by tools/unasync.py: edit that file, then run `make unasync`.
"""The unit of work: one transaction for the state that changed and the events it recorded."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from tidings.codec import Codec
from tidings.context import current_dispatch
from tidings.domain import Aggregate, EventSourced
from tidings.errors import EventDecodeError, UnitOfWorkStateError
from tidings.messages import Envelope, Event, new_id, utc_now
from tidings.projections._sync.inline import InlineProjections
from tidings.projections.projection import Projection
from tidings.snapshots import SnapshotCodec, snapshot_codec
from tidings.store._sync.base import EventStore, StoreTransaction
from tidings.store.records import ExpectedVersion, Snapshot, StreamState

__all__ = ["EventSourcedRepository", "Repository", "UnitOfWork"]

A = TypeVar("A", bound=Aggregate)
ES = TypeVar("ES", bound=EventSourced)


# Orders aggregates across repositories: events are stored in the order aggregates were met.
_tracking = itertools.count()

logger = logging.getLogger(__name__)


class Repository(Generic[A]):
    """Base for repositories: remembers the aggregates it handed out, so their events get stored.

    Subclasses implement `_add` and `_get` (as in "Architecture Patterns with Python").
    """

    def __init__(self) -> None:
        self.seen: list[A] = []
        self._met: dict[int, int] = {}

    def add(self, aggregate: A) -> None:
        self._add(aggregate)
        self._track(aggregate)

    def get(self, aggregate_id: Any) -> A | None:
        """The aggregate with this id, or None."""
        aggregate = self._get(aggregate_id)
        if aggregate is not None:
            self._track(aggregate)
        return aggregate

    def _add(self, aggregate: A) -> None:
        raise NotImplementedError

    def _get(self, aggregate_id: Any) -> A | None:
        raise NotImplementedError

    def _track(self, aggregate: A) -> None:
        if id(aggregate) not in self._met:
            self._met[id(aggregate)] = next(_tracking)
            self.seen.append(aggregate)

    def _forget(self) -> None:
        self.seen.clear()
        self._met.clear()


class EventSourcedRepository(Repository[ES]):
    """Loads event-sourced aggregates from their streams, inside a unit of work's transaction.

    A type that sets `snapshot_every` starts from its stream's latest snapshot
    and replays only the events after it; a snapshot of another shape is
    ignored and the whole stream replayed. The aggregate's version is that of
    the last event read, which after a soft delete and revival is not the
    number of events replayed.
    """

    def __init__(self, uow: UnitOfWork, aggregate_type: type[ES]) -> None:
        super().__init__()
        self._uow = uow
        self._type = aggregate_type

    def _add(self, aggregate: ES) -> None:
        if not isinstance(aggregate, self._type):
            raise TypeError(f"expected {self._type.__name__}, got {type(aggregate).__name__}")

    def _get(self, aggregate_id: Any) -> ES | None:
        stream = self._type.stream_for(aggregate_id)
        aggregate = self._from_snapshot(stream, aggregate_id)
        records = self._uow.transaction.read_stream(
            stream, from_version=None if aggregate is None else aggregate.version + 1
        )
        if aggregate is None:
            if not records:
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
        return aggregate

    def _from_snapshot(self, stream: str, aggregate_id: Any) -> ES | None:
        """The aggregate as its latest usable snapshot left it, or None."""
        snapshots = snapshot_codec(self._type)
        if snapshots is None:
            return None
        snapshot = self._uow.store.read_snapshot(stream)
        if snapshot is None:
            return None
        aggregate = self._type(str(aggregate_id))
        return aggregate if snapshots.restore(aggregate, snapshot) else None


class UnitOfWork:
    """Commits the state that changed and the events it recorded in one store transaction.

    ::

        with uow:
            order = uow.repository(Order).get(order_id)
            order.confirm()
            uow.commit()

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
    transaction that stores them (see `tidings.projections._sync.inline`):
    their read model is up to date the moment `commit` returns, and a
    failing handler raises `InlineProjectionFailed` and keeps nothing. They
    are set up (`setup`) once per store, before the first block opens.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        codec: Codec | None = None,
        inline: Iterable[Projection] = (),
    ) -> None:
        self.store = store
        self.codec = codec or Codec()
        inline = list(inline)
        self._inline = InlineProjections(store, inline) if inline else None
        self._context: AbstractContextManager[StoreTransaction] | None = None
        self._transaction: StoreTransaction | None = None
        self._finished = False
        self._event_sourced: dict[type[EventSourced], EventSourcedRepository[Any]] = {}
        self._new_events: list[Envelope[Event]] = []
        self._snapshots: list[Snapshot] = []

    @property
    def transaction(self) -> StoreTransaction:
        """The store transaction of the open block; repositories write through it."""
        if self._transaction is None:
            raise UnitOfWorkStateError("the unit of work is not open: use it as `with uow:`")
        return self._transaction

    def repository(self, aggregate_type: type[ES]) -> EventSourcedRepository[ES]:
        """The repository of an event-sourced aggregate type, in this unit of work."""
        repository = self._event_sourced.get(aggregate_type)
        if repository is None:
            repository = EventSourcedRepository(self, aggregate_type)
            self._event_sourced[aggregate_type] = repository
        return repository

    def begin(self) -> AbstractContextManager[StoreTransaction]:
        """The transaction a block runs in: the store's; override to run in another one."""
        return self.store.transaction()

    def __enter__(self) -> Self:
        if self._transaction is not None:
            raise UnitOfWorkStateError(
                "the unit of work is already open: one serves one block at a time; give each "
                "handler call its own with `PerCall(lambda: UnitOfWork(store))`"
            )
        for repository in self._repositories():
            repository._forget()
        self._finished = False
        if self._inline is not None:
            self._inline.prepare()
        context = self.begin()
        self._transaction = context.__enter__()
        self._context = context
        dispatch = current_dispatch()
        if dispatch is not None:
            dispatch.enlist(self)
        return self

    def __exit__(
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
                transaction.rollback()
        finally:
            context.__exit__(exc_type, exc, traceback)
            self._save_snapshots()

    def commit(self) -> None:
        """Append every tracked aggregate's new events and commit the transaction."""
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
                Envelope(event, new_id(), correlation_id, causation_id, now) for event in events
            ]
            result = transaction.append(
                aggregate.stream, [self.codec.new_event(e) for e in envelopes], expected
            )
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
            self._inline.apply(transaction, stored)
        transaction.commit()
        self._finished = True
        self._new_events.extend(stored)
        for aggregate, snapshots in due:
            try:
                self._snapshots.append(snapshots.take(aggregate))
            except Exception:
                logger.exception("cannot take a snapshot of %s", aggregate.stream)

    def rollback(self) -> None:
        """Discard everything done in this block."""
        self.transaction.rollback()
        self._finished = True

    def _save_snapshots(self) -> None:
        snapshots, self._snapshots = self._snapshots, []
        for snapshot in snapshots:
            try:
                self.store.save_snapshot(snapshot)
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

    def _repositories(self) -> list[Repository[Any]]:
        found = [value for value in vars(self).values() if isinstance(value, Repository)]
        found.extend(self._event_sourced.values())
        return found

    def _aggregates(self) -> list[Aggregate]:
        met = [
            (repository._met[id(aggregate)], aggregate)
            for repository in self._repositories()
            for aggregate in repository.seen
        ]
        return [aggregate for _, aggregate in sorted(met, key=lambda pair: pair[0])]
