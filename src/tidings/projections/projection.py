"""Projections: read models kept up to date from the log, declared as handlers per event type."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Never, TypeVar, overload

from typing_extensions import TypeVar as DefaultTypeVar

from tidings.errors import ConfigurationError, TidingsError
from tidings.messages import Envelope, Event
from tidings.retry import Retry
from tidings.store._async.base import AsyncReadModelTransaction
from tidings.store._sync.base import ReadModelTransaction
from tidings.store.records import RecordedEvent

__all__ = [
    "EventHandler",
    "InlineProjectionFailed",
    "OnFailure",
    "Projection",
    "ProjectionState",
    "ProjectionStatus",
    "PositionBeyondHead",
    "ProjectionStopped",
    "ProjectionTimeout",
    "handles",
    "letter_handler",
    "projection_of",
]

LETTER_PREFIX = "projection:"

Tx = DefaultTypeVar("Tx", contravariant=True, default=ReadModelTransaction)
"""The transaction a projection's handlers, `setup` and `reset` take.

`ReadModelTransaction` (the default) for the blocking runner and
`UnitOfWork`, `AsyncReadModelTransaction` for the async ones; `object` for
a projection that takes either (one that runs code of its own, not SQL).
Contravariant: a projection that takes any transaction runs anywhere.
"""

EventHandler = Callable[[Event, Envelope[Event], Tx], object]
"""Called with the event, its envelope and the store transaction; may return an awaitable.

The transaction is the runner's, of the kind its projection takes (`Tx`);
None for a projection that is not `transactional`, whose handlers run
outside any transaction. The async runner awaits what a handler returns; the
blocking runner refuses an `async def` handler when it is registered.
"""

# `@handles` has an overload per kind of projection, told apart by the method's `self`:
# mypy cannot tie a method's parameter to its class's type argument any other way.
E = TypeVar("E", bound=Event)
R = TypeVar("R")
EitherSelf = TypeVar("EitherSelf", bound="Projection[object]")
BlockingSelf = TypeVar("BlockingSelf", bound="Projection[ReadModelTransaction]")
AsyncSelf = TypeVar("AsyncSelf", bound="Projection[AsyncReadModelTransaction]")
# Any projection at all: each is a `Projection[Never]`, `Tx` being contravariant.
AnySelf = TypeVar("AnySelf", bound="Projection[Never]")


class ProjectionState(enum.StrEnum):
    """Where a projection stands; kept in the database so every process agrees.

    `STOPPED` and `STALE` are never stored: `status()` shows them in place of
    `RUNNING` or `REBUILDING` when no runner is there to do it.
    """

    RUNNING = "running"
    PAUSED = "paused"
    PARKED = "parked"
    REBUILDING = "rebuilding"
    STOPPED = "stopped"
    """It would run, but no runner holds its lease."""
    STALE = "stale"
    """It would run, but the runner holding its lease has not been heard of for the lease's length.

    The lease is renewed every third of its length: that runner missed
    three heartbeats in a row, and is likely gone (another runner takes the
    projection over).
    """


class OnFailure(enum.StrEnum):
    """What a runner does with an event a projection still fails on after every retry."""

    PARK = "park"
    """Stop this projection at the event, keeping the error, until `resume`."""
    DEAD_LETTER = "dead-letter"
    """Record the event and the error as a dead letter and move on."""


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """A projection's progress: `lag` counts the events it has still to process up to `head`.

    `held_back` and `held_for` are the store's watermark (`EventStore.watermark`):
    events committed beyond `head` that no reader sees yet, and how long the
    open transaction holding them back has run, in seconds. The lag hides them.

    `owner` is the runner holding the projection's lease (None when none
    does; "inline" for a projection the unit of work applies as it
    commits), and `heartbeat_age` how many seconds ago the last runner of it
    said it was alive (renewing its lease, or committing a batch), kept after
    it has gone; None when no runner ever ran it.
    """

    name: str
    state: ProjectionState
    position: int
    head: int
    lag: int
    error: str | None
    failed_position: int | None
    held_back: int = 0
    held_for: float | None = 0.0
    owner: str | None = None
    heartbeat_age: float | None = None
    partition: int | None = None
    """The partition's index, for a projection split into `partitions` (its `name` is
    `<projection>#<index>`); None for one that is not split."""
    partitions: int = 1


class ProjectionTimeout(TidingsError, TimeoutError):
    """A projection did not reach a position in time (read your writes)."""

    def __init__(self, name: str, position: int, reached: int, timeout: float) -> None:
        self.name = name
        self.position = position
        self.reached = reached
        super().__init__(
            f"projection {name!r} did not reach position {position} within {timeout} s "
            f"(it is at {reached})"
        )


class PositionBeyondHead(TidingsError, ValueError):
    """A wait for a log position no event has: it would never end, so it is refused at once.

    `head` is the last position committed when the wait began. A position an
    append returned is never beyond it, however far behind readers are.
    """

    def __init__(self, position: int, head: int) -> None:
        self.position = position
        self.head = head
        super().__init__(f"position {position} is beyond the log's head ({head})")


class ProjectionStopped(TidingsError):
    """A projection stopped (parked on a failure, or paused) before it caught up."""

    def __init__(self, name: str, state: ProjectionState, error: str | None) -> None:
        self.name = name
        self.state = state
        self.error = error
        reason = f": {error}" if error else ""
        super().__init__(f"projection {name!r} is {state}{reason}")


class InlineProjectionFailed(TidingsError, RuntimeError):
    """An inline projection's handler failed, so the unit of work committed nothing.

    Neither the events nor any read model change of that commit are kept.
    The handler's exception is the cause (`__cause__`).
    """

    def __init__(self, name: str, event_type: str, position: int, error: Exception) -> None:
        self.name = name
        self.event_type = event_type
        self.position = position
        super().__init__(
            f"inline projection {name!r} failed on {event_type} at position {position}, "
            f"so nothing was committed: {type(error).__name__}: {error}"
        )


def letter_handler(name: str) -> str:
    """The handler named in projection `name`'s dead letters, apart from the bus's handlers."""
    return f"{LETTER_PREFIX}{name}"


def projection_of(handler: str) -> str | None:
    """The projection a dead letter's handler names, or None for a bus handler."""
    return handler.removeprefix(LETTER_PREFIX) if handler.startswith(LETTER_PREFIX) else None


# A projection of either kind matches the next two as well: this one, first, keeps `object`.
@overload
def handles(  # type: ignore[overload-overlap]
    fn: Callable[[EitherSelf, E, Envelope[E], object], R],
) -> Callable[[EitherSelf, E, Envelope[E], object], R]: ...


@overload
def handles(
    fn: Callable[[BlockingSelf, E, Envelope[E], ReadModelTransaction], R],
) -> Callable[[BlockingSelf, E, Envelope[E], ReadModelTransaction], R]: ...


@overload
def handles(
    fn: Callable[[AsyncSelf, E, Envelope[E], AsyncReadModelTransaction], R],
) -> Callable[[AsyncSelf, E, Envelope[E], AsyncReadModelTransaction], R]: ...


@overload
def handles(
    fn: Callable[[AnySelf, E, Envelope[E], None], R],
) -> Callable[[AnySelf, E, Envelope[E], None], R]: ...


def handles(fn: Callable[..., R]) -> Callable[..., R]:
    """Mark a method of a `Projection` as the handler of its first parameter's event type.

    The method is called as `method(event, envelope, tx)`: `tx` is the store
    transaction the checkpoint commits in, of the kind the projection takes
    (`ReadModelTransaction` in a blocking one, `AsyncReadModelTransaction` in
    an async one: mypy refuses the other), or None in a projection that is
    not `transactional`.
    """
    event_type = _first_parameter_type(fn)
    fn.__dict__["__projection_event__"] = event_type
    return fn


class Projection(Generic[Tx]):
    """A read model fed by events: subclass, name it, and mark handlers with `@handles`.

    ::

        class OrderCount(Projection):
            name = "order_count"

            def setup(self, tx: ReadModelTransaction) -> None:
                tx.execute("CREATE TABLE IF NOT EXISTS ...")

            def reset(self, tx: ReadModelTransaction) -> None:
                tx.execute("DELETE FROM ...")

            @handles
            def placed(
                self, event: OrderPlaced, envelope: Envelope[OrderPlaced], tx: ReadModelTransaction
            ) -> None: ...

    A plain `Projection` is a `Projection[ReadModelTransaction]`, for the
    blocking `ProjectionRunner` and `UnitOfWork`; one for the async runner
    and `AsyncUnitOfWork` is a `Projection[AsyncReadModelTransaction]`, its
    `setup`, `reset` and handlers taking that (and awaiting `tx.execute`).
    Each runner takes only projections of its kind, so mypy refuses the
    other; a `Projection[object]`, whose code uses no transaction, runs in both.

    With `partitions` above 1 the projection is split by `partition_key`
    (the stream, by default): each partition has a checkpoint and a lease of
    its own, so runners in several processes share the work, every event of
    one key still handled in order by one of them (see
    `tidings.projections.partitions`).

    A handler matches events of exactly its class (one for `Event` matches
    all), and the runner reads only those types from the log. With
    `transactional` (the default) handlers run in the transaction that commits
    the checkpoint: a read model in the store's database changes exactly once
    per event. Otherwise handlers run first and the checkpoint commits after
    them, so an event may be handled again after a crash (at least once):
    make such handlers idempotent by `envelope.message_id`.
    """

    name: str
    categories: ClassVar[Collection[str] | None] = None
    """Only events of streams in these categories, when set."""
    transactional: ClassVar[bool] = True
    retry: ClassVar[Retry] = Retry()
    on_failure: ClassVar[OnFailure] = OnFailure.PARK
    partitions: ClassVar[int] = 1
    """Into how many partitions its events are split; recorded with its checkpoints."""
    _handler_names: ClassVar[dict[type[Event], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[type[Event], str] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                event_type = getattr(value, "__projection_event__", None)
                if event_type is None:
                    continue
                if found.get(event_type, attribute) != attribute:
                    raise ConfigurationError(
                        f"{cls.__qualname__}: {event_type.__qualname__} has two handlers, "
                        f"{found[event_type]} and {attribute}"
                    )
                found[event_type] = attribute
        cls._handler_names = found

    def setup(self, tx: Tx) -> object:
        """Create the read model if it does not exist (called when a runner starts)."""

    def reset(self, tx: Tx) -> object:
        """Empty the read model, for a rebuild from the first event."""
        raise ConfigurationError(f"projection {self.name!r} does not say how to reset itself")

    def partition_key(self, record: RecordedEvent) -> str:
        """What decides an event's partition: its stream, so a stream's events stay in order."""
        return record.stream

    def handlers(self) -> Mapping[str, EventHandler[Tx]]:
        """The handler of each stored event type name."""
        table: dict[str, EventHandler[Tx]] = {}
        for event_type, attribute in self._handler_names.items():
            table[event_type.__event_type__] = getattr(self, attribute)
        return table

    def event_types(self) -> Collection[str] | None:
        """The type names to read, or None for every event (a handler for `Event`)."""
        if Event in self._handler_names:
            return None
        return frozenset(event_type.__event_type__ for event_type in self._handler_names)


def _first_parameter_type(fn: Callable[..., Any]) -> type[Event]:
    name = getattr(fn, "__qualname__", repr(fn))
    parameters = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    if not parameters:
        raise ConfigurationError(f"{name}: a projection handler takes the event first")
    hints = typing.get_type_hints(fn)
    annotation = hints.get(parameters[0].name)
    if not (isinstance(annotation, type) and issubclass(annotation, Event)):
        raise ConfigurationError(
            f"{name}: annotate the first parameter with the event type it handles"
        )
    return annotation
