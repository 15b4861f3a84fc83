"""Given/when/then scenarios and small fakes for testing applications built on tidings.

Two scenarios, read the same way:

- `AggregateScenario` tests one aggregate with no bus and no store: given its
  past (events for an `EventSourced` aggregate, or a state-stored instance),
  when an action, then exactly these new events, or this error::

      (
          AggregateScenario(Order, "o1")
          .given(OrderPlaced("o1", "c1", items, total, "EUR"))
          .when(Order.confirm, at=NOON)
          .then(OrderConfirmed("o1", confirmed_at=NOON))
      )
      AggregateScenario(Order, "o1").given(...).when(Order.ship, "TN1").then_raises(
          InvalidTransition, match="it is pending"
      )

- `BusScenario` tests the application through a `MessageBus` over a
  `MemoryStore`: given events already in the store (or messages handled
  before), when a command, then exactly the events committed while handling
  it, or the error its caller gets; the result and the dead letters are on
  the outcome.

Expected events are compared in order and in full. An expected event is
either an event, compared with `==` (a field set to `unittest.mock.ANY`
matches anything, which suits timestamps), or `like(EventType, field=value,
where=predicate)`, which matches an instance of the type whose named fields
are equal and for which the predicate holds, ignoring the other fields.
A mismatch raises `AssertionError` listing the expected and the actual events
and, position by position, what differs.

`Recorder` is a fake for a callable dependency (a mailer, a notifier, a
publisher): it records every call and can be told to fail.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, cast

from tidings._sync.bus import MessageBus
from tidings._sync.uow import UnitOfWork
from tidings.codec import Codec
from tidings.dead_letters import DeadLetter
from tidings.domain import Aggregate, EventSourced
from tidings.handlers import Router
from tidings.messages import Envelope, Event, Message
from tidings.store._sync.memory import MemoryStore

__all__ = [
    "AggregateOutcome",
    "AggregateScenario",
    "BusOutcome",
    "BusScenario",
    "Call",
    "EventMatcher",
    "Expected",
    "Recorder",
    "like",
]

A = TypeVar("A", bound=Aggregate)
E = TypeVar("E", bound=Event)
X = TypeVar("X", bound=Exception)


@dataclass(frozen=True, slots=True)
class EventMatcher(Generic[E]):
    """Matches an instance of `event_type` with the given field values, for which `where` holds.

    Built with `like`; fields not named are not compared.
    """

    event_type: type[E]
    fields: Mapping[str, Any]
    where: Callable[[E], bool] | None = None

    def mismatches(self, event: Event) -> list[str]:
        """Why `event` does not match (empty when it does)."""
        if not isinstance(event, self.event_type):
            return [f"expected a {self.event_type.__name__}, got {type(event).__name__}"]
        reasons = _field_differences(event, self.fields)
        if self.where is not None and not self.where(event):
            reasons.append(f"where={_callable_name(self.where)} is false for it")
        return reasons

    def __repr__(self) -> str:
        shown = [f"{name}={value!r}" for name, value in self.fields.items()]
        if self.where is not None:
            shown.append(f"where={_callable_name(self.where)}")
        return f"like({', '.join([self.event_type.__name__, *shown])})"


Expected = Event | EventMatcher[Any]
"""What `then` accepts for each event: an event to compare whole, or a `like(...)` matcher."""


def like(
    event_type: type[E], /, *, where: Callable[[E], bool] | None = None, **fields: Any
) -> EventMatcher[E]:
    """Match an event by type and only the fields named, optionally with a predicate.

    ::

        like(OrderShipped, order_id="o1", tracking_number="TN1")
        like(OrderCancelled, where=lambda e: e.cancelled_at.tzinfo is not None)

    Naming a field the event type does not have is a `TypeError`, so a typo
    cannot make a matcher that checks nothing.
    """
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise TypeError(f"like() takes an Event class, not {event_type!r}")
    if dataclasses.is_dataclass(event_type):
        known = {f.name for f in dataclasses.fields(event_type)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise TypeError(f"{event_type.__name__} has no field {', '.join(map(repr, unknown))}")
    return EventMatcher(event_type, dict(fields), where)


@dataclass(frozen=True, slots=True)
class AggregateOutcome(Generic[A]):
    """What the action of an `AggregateScenario` did."""

    aggregate: A
    """The aggregate after the action (the one created, for a factory)."""
    result: Any
    """What the action returned."""
    events: tuple[Event, ...]
    """The events the action recorded."""


class AggregateScenario(Generic[A]):
    """Given an aggregate's past, when an action, then exactly these new events or this error.

    `given(*events)` rebuilds an `EventSourced` aggregate with id `aggregate_id`
    from its history; `given(instance)` starts from a state-stored (or any)
    aggregate as it is. `when(action, *args, **kwargs)` calls
    `action(aggregate, *args, **kwargs)`: a lambda or an unbound method such as
    `Order.confirm`. With no `given`, the action creates the aggregate instead
    (a factory such as `Order.place`): it is called with the arguments alone
    and must return an instance of the aggregate type, whose events are then
    all new. The action runs once, at the first `then` or `then_raises`
    after `when`, so several checks can read one outcome. A given instance is
    used as it is, not copied.
    """

    def __init__(self, aggregate_type: type[A], aggregate_id: str = "test") -> None:
        if not (isinstance(aggregate_type, type) and issubclass(aggregate_type, Aggregate)):
            raise TypeError(f"AggregateScenario takes an Aggregate class, not {aggregate_type!r}")
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self._history: list[Event] = []
        self._instance: A | None = None
        self._action: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None
        self._ran: tuple[AggregateOutcome[A] | None, Exception | None] | None = None

    def given(self, *past: Event | A) -> Self:
        """The aggregate's past: events it has already applied, or the aggregate itself."""
        instances = [p for p in past if isinstance(p, Aggregate)]
        events = [p for p in past if isinstance(p, Event)]
        if len(instances) + len(events) != len(past):
            strays = [p for p in past if not isinstance(p, Aggregate | Event)]
            raise TypeError(f"given() takes events or an aggregate, not {strays[0]!r}")
        if instances:
            if len(past) > 1 or self._history or self._instance is not None:
                raise TypeError("given() takes one aggregate instance, or events, not both")
            if not isinstance(instances[0], self.aggregate_type):
                raise TypeError(
                    f"given() expected a {self.aggregate_type.__name__}, "
                    f"got {type(instances[0]).__name__}"
                )
            self._instance = instances[0]
            self._ran = None
            return self
        if self._instance is not None:
            raise TypeError("given() takes one aggregate instance, or events, not both")
        if events and not issubclass(self.aggregate_type, EventSourced):
            raise TypeError(
                f"{self.aggregate_type.__name__} is state-stored, so events cannot rebuild it: "
                "pass an instance to given()"
            )
        self._history.extend(events)
        self._ran = None
        return self

    def when(self, action: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Self:
        """The action under test; it runs at `then` or `then_raises`."""
        if not callable(action):
            raise TypeError(f"when() takes a callable, not {action!r}")
        self._action = (action, args, kwargs)
        self._ran = None
        return self

    def then(self, *expected: Expected) -> AggregateOutcome[A]:
        """Assert the action recorded exactly `expected`, in order (none: it recorded nothing)."""
        outcome, error = self._run()
        if error is not None:
            raise AssertionError(
                f"{self._subject()}: expected {_count(len(expected))}, but {self._action_name()} "
                f"raised {type(error).__name__}: {error}"
            ) from error
        assert outcome is not None
        _check_events(self._subject(), expected, outcome.events)
        return outcome

    def then_raises(self, error: type[X], match: str | None = None) -> X:
        """Assert the action raised `error` (or a subclass), its message matching regex `match`."""
        outcome, raised = self._run()
        if raised is None:
            assert outcome is not None
            raise AssertionError(
                f"{self._subject()}: expected {self._action_name()} to raise {error.__name__}, "
                f"but it returned {outcome.result!r} and recorded:\n{_listing(outcome.events)}"
            )
        if not isinstance(raised, error):
            raise AssertionError(
                f"{self._subject()}: expected {self._action_name()} to raise {error.__name__}, "
                f"but it raised {type(raised).__name__}: {raised}"
            ) from raised
        _check_message(raised, match)
        return raised

    def _run(self) -> tuple[AggregateOutcome[A] | None, Exception | None]:
        """Run the action once per `when`; a scenario set up wrongly raises, not the action."""
        if self._action is None:
            raise RuntimeError("call when(...) before then(...) or then_raises(...)")
        if self._ran is not None:
            return self._ran
        action, args, kwargs = self._action
        creating = self._instance is None and not self._history
        aggregate = None if creating else self._build()
        before = 0 if aggregate is None else len(aggregate.pending_events)
        try:
            if aggregate is None:
                result = action(*args, **kwargs)
            else:
                result = action(aggregate, *args, **kwargs)
        except Exception as exc:
            self._ran = (None, exc)
            return self._ran
        if aggregate is None:
            if not isinstance(result, self.aggregate_type):
                raise TypeError(
                    f"with no given(), the action creates the aggregate: "
                    f"{self._action_name()} returned {result!r}, not a "
                    f"{self.aggregate_type.__name__}"
                )
            aggregate = result
        self._ran = (AggregateOutcome(aggregate, result, aggregate.pending_events[before:]), None)
        return self._ran

    def _action_name(self) -> str:
        assert self._action is not None
        return _callable_name(self._action[0])

    def _build(self) -> A:
        if self._instance is not None:
            return self._instance
        es_type = cast(type[EventSourced], self.aggregate_type)
        return cast(A, es_type.rebuild(self.aggregate_id, self._history))

    def _subject(self) -> str:
        return f"{self.aggregate_type.__name__} {self.aggregate_id!r}"


@dataclass(frozen=True, slots=True)
class BusOutcome:
    """What handling the `when` message did."""

    result: Any
    """What the bus returned to the caller."""
    envelopes: tuple[Envelope[Event], ...]
    """The events committed while handling it, with their envelopes, in log order."""
    dead_letters: tuple[DeadLetter, ...]
    """Event handlers that failed every attempt while handling it."""

    @property
    def events(self) -> tuple[Event, ...]:
        """The events committed while handling the message, in log order."""
        return tuple(envelope.message for envelope in self.envelopes)


class BusScenario:
    """Given a store's past, when a message, then exactly these committed events or this error.

    Built from the application's routers and the fakes its handlers need::

        scenario = BusScenario(router, dependencies={"send_mail": Recorder()})

    A unit of work over the scenario's `MemoryStore` is injected as `uow`
    (made by `unit_of_work`, `UnitOfWork` unless given) unless `dependencies`
    names one. An application with a composition root is built by it instead::

        scenario = BusScenario.using(lambda store: bootstrap(store=store, send_mail=mail))

    Either way the waits between retries are switched off. Every event
    committed while the message is handled is also handled by the bus, in
    process, before `handle` returns; `then` checks those events, and that no
    event handler was dead-lettered unless `dead_letters` says how many.
    """

    def __init__(
        self,
        handlers: Router | Iterable[Router],
        *,
        dependencies: Mapping[str | type, Any] | None = None,
        unit_of_work: Callable[[MemoryStore], UnitOfWork] = UnitOfWork,
        store: MemoryStore | None = None,
        **bus_options: Any,
    ) -> None:
        self.store = store if store is not None else MemoryStore()
        provided = dict(dependencies or {})
        self.uow: UnitOfWork | None = None
        if "uow" not in provided:
            self.uow = unit_of_work(self.store)
            provided["uow"] = self.uow
        bus_options.setdefault("retry_waits", False)
        self._start(self.store, MessageBus(handlers, dependencies=provided, **bus_options))

    @classmethod
    def using(
        cls, build: Callable[[MemoryStore], MessageBus], *, store: MemoryStore | None = None
    ) -> Self:
        """A scenario over the bus that `build` makes around the scenario's store."""
        store = store if store is not None else MemoryStore()
        bus = build(store)
        if not isinstance(bus, MessageBus):
            raise TypeError(f"the build function must return a MessageBus, not {bus!r}")
        bus.retry_waits = False
        scenario = cls.__new__(cls)
        scenario.uow = None
        scenario._start(store, bus)
        return scenario

    def _start(self, store: MemoryStore, bus: MessageBus) -> None:
        self.store = store
        self.bus = bus
        self.codec = Codec()
        self._when: Message | Envelope[Message] | None = None
        self._outcome: tuple[BusOutcome, Exception | None] | None = None

    def given(self, stream: str, *events: Event) -> Self:
        """Append `events` to `stream` in the store, as if committed earlier."""
        if not isinstance(stream, str):
            raise TypeError(f"given() takes the stream name first, then its events, not {stream!r}")
        if not events:
            raise TypeError(f"given({stream!r}) needs at least one event")
        strays = [e for e in events if not isinstance(e, Event)]
        if strays:
            raise TypeError(f"given() appends events, not {strays[0]!r}")
        envelopes: list[Envelope[Event]] = []
        for event in events:
            conversation = envelopes[0].correlation_id if envelopes else None
            envelopes.append(Envelope.new(event, correlation_id=conversation))
        self.store.append(stream, [self.codec.new_event(e) for e in envelopes])
        return self

    def given_handled(self, *messages: Message) -> Self:
        """Handle `messages` through the bus first (for example commands that set up state)."""
        for message in messages:
            self.bus.handle(message)
        return self

    def when(self, message: Message | Envelope[Message]) -> Self:
        """The message under test; it is handled at `then` or `then_raises`."""
        self._when = message
        self._outcome = None
        return self

    def then(self, *expected: Expected, dead_letters: int = 0) -> BusOutcome:
        """Assert handling committed exactly `expected`, in log order, and dead-lettered so many."""
        outcome, error = self._run()
        if error is not None:
            raise AssertionError(
                f"{self._subject()}: expected {_count(len(expected))}, but the caller got "
                f"{type(error).__name__}: {error}"
            ) from error
        _check_events(self._subject(), expected, outcome.events)
        if len(outcome.dead_letters) != dead_letters:
            letters = "\n".join(
                f"  {letter.handler} on {type(letter.envelope.message).__name__}: "
                f"{letter.error} ({letter.attempts} attempts)"
                for letter in outcome.dead_letters
            )
            raise AssertionError(
                f"{self._subject()}: expected {dead_letters} dead letters, "
                f"got {len(outcome.dead_letters)}:\n{letters or '  (none)'}"
            )
        return outcome

    def then_raises(self, error: type[X], match: str | None = None) -> X:
        """Assert the caller got `error` (or a subclass), its message matching regex `match`."""
        outcome, raised = self._run()
        if raised is None:
            raise AssertionError(
                f"{self._subject()}: expected {error.__name__}, but it returned "
                f"{outcome.result!r} and committed:\n{_listing(outcome.events)}"
            )
        if not isinstance(raised, error):
            raise AssertionError(
                f"{self._subject()}: expected {error.__name__}, "
                f"but the caller got {type(raised).__name__}: {raised}"
            ) from raised
        _check_message(raised, match)
        return raised

    def _run(self) -> tuple[BusOutcome, Exception | None]:
        if self._when is None:
            raise RuntimeError("call when(message) before then(...) or then_raises(...)")
        if self._outcome is None:
            known = {letter.id for letter in self.bus.dead_letters.list()}
            before = self._last_position()
            result: Any = None
            error: Exception | None = None
            try:
                result = self.bus.handle(self._when)
            except Exception as exc:
                error = exc
            committed = tuple(
                self.codec.envelope(record) for record in self.store.read_all(after=before)
            )
            letters = tuple(d for d in self.bus.dead_letters.list() if d.id not in known)
            self._outcome = (BusOutcome(result, committed, letters), error)
        return self._outcome

    def _last_position(self) -> int:
        records = self.store.read_all()
        return records[-1].position if records else 0

    def _subject(self) -> str:
        message = self._when.message if isinstance(self._when, Envelope) else self._when
        return f"handling {message!r}"


@dataclass(frozen=True, slots=True)
class Call:
    """One call a `Recorder` received."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Recorder:
    """A fake for a callable dependency: records every call, returns `returns`, or fails.

    ::

        mail = Recorder()
        bus = bootstrap(send_mail=mail)
        ...
        assert mail.calls[0].kwargs["subject"] == "Out of stock: LAMP"

    With `fail_with`, calls raise that exception: the first `failures` calls,
    or every call when `failures` is None. Failed calls are recorded too, so
    the number of attempts an event handler made shows in `calls`.
    """

    def __init__(
        self,
        *,
        returns: Any = None,
        fail_with: BaseException | None = None,
        failures: int | None = None,
    ) -> None:
        if failures is not None and fail_with is None:
            raise ValueError("failures counts calls that raise fail_with; give fail_with too")
        self.returns = returns
        self.fail_with = fail_with
        self.failures = failures
        self.calls: list[Call] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(args, kwargs))
        if self.fail_with is not None and (
            self.failures is None or len(self.calls) <= self.failures
        ):
            # A fresh traceback each time, or the shared exception would grow one per call.
            raise self.fail_with.with_traceback(None)
        return self.returns


def _check_events(subject: str, expected: Sequence[Expected], actual: Sequence[Event]) -> None:
    for item in expected:
        if not isinstance(item, Event | EventMatcher):
            raise TypeError(f"then() takes events or like(...) matchers, not {item!r}")
    differences: list[str] = []
    for index in range(max(len(expected), len(actual))):
        if index >= len(actual):
            differences.append(f"  {index + 1}: missing {expected[index]!r}")
        elif index >= len(expected):
            differences.append(f"  {index + 1}: unexpected {actual[index]!r}")
        else:
            reasons = _mismatches(expected[index], actual[index])
            if reasons:
                differences.append(f"  {index + 1}: " + "; ".join(reasons))
    if differences:
        raise AssertionError(
            "\n".join(
                [
                    f"{subject}: the new events are not those expected",
                    f"expected {_count(len(expected))}:",
                    _listing(expected),
                    f"got {_count(len(actual))}:",
                    _listing(actual),
                    "differences:",
                    *differences,
                ]
            )
        )


def _mismatches(expected: Expected, actual: Event) -> list[str]:
    if isinstance(expected, EventMatcher):
        return expected.mismatches(actual)
    if type(actual) is not type(expected):
        return [f"expected {type(expected).__name__}, got {type(actual).__name__}"]
    if expected == actual:
        return []
    if dataclasses.is_dataclass(expected):
        values = {f.name: getattr(expected, f.name) for f in dataclasses.fields(expected)}
        reasons = _field_differences(actual, values)
        if reasons:
            return reasons
    return [f"expected {expected!r}, got {actual!r}"]


def _field_differences(event: Event, values: Mapping[str, Any]) -> list[str]:
    reasons = []
    for name, wanted in values.items():
        found = getattr(event, name)
        # Expected value on the left, so `mock.ANY` and custom matchers get to decide.
        if wanted != found:
            reasons.append(f"{name}: expected {wanted!r}, got {found!r}")
    return reasons


def _check_message(exc: BaseException, match: str | None) -> None:
    if match is not None and not re.search(match, str(exc)):
        raise AssertionError(
            f"{type(exc).__name__} was raised, but its message {str(exc)!r} "
            f"does not match {match!r}"
        ) from exc


def _listing(events: Sequence[Expected]) -> str:
    if not events:
        return "  (none)"
    return "\n".join(f"  {i}. {event!r}" for i, event in enumerate(events, start=1))


def _count(n: int) -> str:
    return "no events" if n == 0 else f"{n} event" + ("" if n == 1 else "s")


def _callable_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
