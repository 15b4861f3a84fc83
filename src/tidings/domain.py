"""Aggregates: consistency boundaries that record what happened to them as events.

`Aggregate` is state-stored (its state lives in rows) and collects the events
its methods record. `EventSourced` keeps only state derived from its events,
rebuilt from its stream; each event changes state through a method marked
`@applies`. Both hand their new events to the unit of work, which appends them
to the log in the same transaction as the state. Nothing here does I/O.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Self, TypeVar

from tidings.categories import claim_category
from tidings.messages import Event

__all__ = ["Aggregate", "EventSourced", "applies"]

E = TypeVar("E", bound=Event)
Applier = Callable[[Any, E], None]


class Aggregate:
    """An aggregate that records events as it changes.

    Subclasses provide an `id` (attribute or property); the events go to the
    stream `<category>-<id>`, the category being the class name unless set.
    """

    category: ClassVar[str]
    id: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "category" not in cls.__dict__:
            cls.category = cls.__name__
        claim_category(cls.category, "aggregate", f"{cls.__module__}.{cls.__qualname__}")

    @property
    def _pending(self) -> list[Event]:
        # Created lazily: subclasses need not call super().__init__().
        try:
            return self.__dict__["_tidings_pending"]  # type: ignore[no-any-return]
        except KeyError:
            pending: list[Event] = []
            self.__dict__["_tidings_pending"] = pending
            return pending

    @property
    def stream(self) -> str:
        """The name of this aggregate's stream in the event log."""
        return f"{self.category}-{self.id}"

    @classmethod
    def stream_for(cls, aggregate_id: object) -> str:
        return f"{cls.category}-{aggregate_id}"

    def record(self, event: Event) -> None:
        """Note that `event` happened to this aggregate; it is stored at the next commit."""
        if not isinstance(event, Event):
            raise TypeError(f"aggregates record events, not {type(event).__name__}: {event!r}")
        self._pending.append(event)

    @property
    def pending_events(self) -> tuple[Event, ...]:
        """Events recorded since the last commit."""
        return tuple(self._pending)

    def collect_events(self) -> list[Event]:
        """Take the events recorded since the last collection."""
        pending = self._pending
        taken = list(pending)
        pending.clear()
        return taken


def applies(method: Callable[[Any, E], None]) -> Callable[[Any, E], None]:
    """Mark an `EventSourced` method as the one that applies the event type it is annotated with."""
    method.__tidings_applies__ = True  # type: ignore[attr-defined]
    return method


class EventSourced(Aggregate):
    """An aggregate whose state is derived only from its events.

    ::

        class Order(EventSourced):
            status: OrderStatus | None = None

            def confirm(self) -> None:
                if self.status is not OrderStatus.PENDING:
                    raise InvalidTransition(...)
                self.record(OrderConfirmed(...))

            @applies
            def _confirmed(self, event: OrderConfirmed) -> None:
                self.status = OrderStatus.CONFIRMED

    `record` applies the event at once, so state is always current; `version`
    counts every event applied, committed or not.
    """

    __appliers__: ClassVar[dict[type[Event], Callable[[Any, Any], None]]] = {}
    snapshot_every: ClassVar[int | None] = None
    """Take a snapshot every N events (None: never); state is the class's annotated fields."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        appliers: dict[type[Event], Callable[[Any, Any], None]] = {}
        for base in reversed(cls.__mro__[1:]):
            appliers.update(getattr(base, "__appliers__", {}))
        for name, member in cls.__dict__.items():
            if getattr(member, "__tidings_applies__", False):
                appliers[_applied_type(cls, name, member)] = member
        cls.__appliers__ = appliers

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0

    @classmethod
    def rebuild(cls, aggregate_id: str, events: Iterable[Event]) -> Self:
        """The aggregate as its history leaves it; the constructor must take the id alone."""
        aggregate = cls(aggregate_id)
        for event in events:
            aggregate._apply(event)
        return aggregate

    def record(self, event: Event) -> None:
        self._apply(event)
        super().record(event)

    @property
    def committed_version(self) -> int:
        """The stream version this aggregate was loaded at, before its pending events."""
        return self.version - len(self._pending)

    def _apply(self, event: Event) -> None:
        for event_type in type(event).__mro__:
            applier = self.__appliers__.get(event_type)
            if applier is not None:
                applier(self, event)
                self.version += 1
                return
        raise TypeError(f"{type(self).__name__} has no @applies method for {type(event).__name__}")


def _applied_type(cls: type, name: str, method: Any) -> type[Event]:
    try:
        params = list(inspect.signature(method, eval_str=True).parameters.values())
    except NameError as exc:
        raise TypeError(
            f"{cls.__name__}.{name}: annotate the event with a class defined before it: {exc}"
        ) from exc
    annotation = params[1].annotation if len(params) == 2 else None
    if not (isinstance(annotation, type) and issubclass(annotation, Event)):
        raise TypeError(f"{cls.__name__}.{name}: an @applies method takes (self, event: SomeEvent)")
    return annotation
