"""Process managers: event-driven, one instance per correlation key, reacting with commands.

::

    class Fulfilment(ProcessManager):
        name = "Fulfilment"

        @reacts(key=lambda e: e.order_id, starts=True)
        def placed(self, event: OrderPlaced, process: Process) -> None:
            process.data["amount"] = str(event.amount)
            process.send(ChargePayment(event.order_id, event.amount))
            process.schedule(PaymentOverdue(event.order_id), after=timedelta(minutes=15))

        @reacts(key=lambda e: e.order_id)
        def paid(self, event: PaymentCharged, process: Process) -> None:
            process.send(ShipOrder(event.order_id))
            process.end()

An instance lives in the stream `<name>-<key>` as `ProcessReacted` events;
nothing here does I/O (see `AsyncProcesses`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from tidings.categories import claim_category
from tidings.errors import ConfigurationError
from tidings.messages import Command, Event, utc_now
from tidings.sagas.events import ProcessReacted

__all__ = ["Process", "ProcessManager", "ProcessState", "Reaction", "reacts"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Reaction:
    """How a process manager reacts to one event type."""

    event_type: type[Event]
    attribute: str
    key: Callable[[Any], str]
    starts: bool


def reacts(*, key: Callable[[Any], Any], starts: bool = False) -> Callable[[F], F]:
    """Mark a method as the reaction to its first parameter's event type.

    `key(event)` names the instance the event belongs to; with `starts` an
    event with no instance yet begins one, otherwise such an event is ignored.
    """

    def mark(fn: F) -> F:
        fn.__dict__["__process_reaction__"] = (key, starts)
        return fn

    return mark


@dataclass(slots=True)
class Process:
    """One process instance as a reaction sees it: its `data`, and what it asks for.

    `data` must stay JSON-shaped: it is stored after each reaction.
    """

    id: str
    data: dict[str, Any]
    commands: list[Command] = field(default_factory=list)
    scheduled: list[tuple[Event | Command, datetime]] = field(default_factory=list)
    ended: bool = False

    def send(self, command: Command) -> None:
        """Send `command` through the bus once this reaction has run."""
        if not isinstance(command, Command):
            raise TypeError(f"a process sends commands, not {type(command).__name__}")
        self.commands.append(command)

    def schedule(
        self,
        message: Event | Command,
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
    ) -> None:
        """Deliver `message` later (a timeout), in the same commit as this reaction's state.

        A scheduled event is appended to the stream `<name>Timers-<id>`, where
        the process manager's subscription finds it.
        """
        if (after is None) == (at is None):
            raise ValueError("schedule a message either `after` a delay or `at` a time")
        if at is None:
            assert after is not None
            at = utc_now() + after
        self.scheduled.append((message, at))

    def end(self) -> None:
        """End this instance: later events for it are ignored."""
        self.ended = True


@dataclass(slots=True)
class ProcessState:
    """An instance as its stream leaves it."""

    data: dict[str, Any] = field(default_factory=dict)
    handled: set[UUID] = field(default_factory=set)
    ended: bool = False
    version: int = 0

    @staticmethod
    def replay(events: Iterable[Event]) -> ProcessState:
        state = ProcessState()
        for event in events:
            if not isinstance(event, ProcessReacted):
                raise TypeError(f"a process stream holds no {type(event).__name__} events")
            state.data = dict(event.data)
            state.handled.add(event.event_id)
            state.ended = state.ended or event.ended
            state.version += 1
        return state


class ProcessManager:
    """Base of process managers: set `name` (a stream category) and mark reactions."""

    name: ClassVar[str]
    reactions: ClassVar[dict[type[Event], Reaction]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name", cls.__name__)
        if not isinstance(name, str) or not name or "-" in name:
            raise ConfigurationError(f"{cls.__qualname__}.name is a stream category, got {name!r}")
        cls.name = name
        claim_category(name, "process manager", f"{cls.__module__}.{cls.__qualname__}")
        found: dict[type[Event], Reaction] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                marked = getattr(value, "__process_reaction__", None)
                if marked is None:
                    continue
                event_type = _event_type(cls, attribute, value)
                known = found.get(event_type)
                if known is not None and known.attribute != attribute:
                    raise ConfigurationError(
                        f"{cls.__qualname__}: {event_type.__qualname__} has two reactions, "
                        f"{known.attribute} and {attribute}"
                    )
                found[event_type] = Reaction(event_type, attribute, marked[0], marked[1])
        cls.reactions = found

    def stream(self, key: str) -> str:
        return f"{self.name}-{key}"

    def timer_stream(self, key: str) -> str:
        return f"{self.name}Timers-{key}"


def _event_type(cls: type, attribute: str, fn: Any) -> type[Event]:
    parameters = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    hints = typing.get_type_hints(fn)
    annotation = hints.get(parameters[0].name) if parameters else None
    if len(parameters) != 2 or not (isinstance(annotation, type) and issubclass(annotation, Event)):
        raise ConfigurationError(
            f"{cls.__qualname__}.{attribute}: a reaction takes (self, event: SomeEvent, process)"
        )
    return annotation
