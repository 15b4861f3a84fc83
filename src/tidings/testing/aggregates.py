"""Given an aggregate's past, when an action, then these new events or this error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, cast

from tidings.domain import Aggregate, EventSourced
from tidings.messages import Event
from tidings.testing.matching import (
    Expected,
    callable_name,
    check_events,
    check_message,
    count,
    listing,
)

__all__ = ["AggregateOutcome", "AggregateScenario"]

A = TypeVar("A", bound=Aggregate)
X = TypeVar("X", bound=Exception)


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
                f"{self._subject()}: expected {count(len(expected))}, but {self._action_name()} "
                f"raised {type(error).__name__}: {error}"
            ) from error
        assert outcome is not None
        check_events(self._subject(), expected, outcome.events)
        return outcome

    def then_raises(self, error: type[X], match: str | None = None) -> X:
        """Assert the action raised `error` (or a subclass), its message matching regex `match`."""
        outcome, raised = self._run()
        if raised is None:
            assert outcome is not None
            raise AssertionError(
                f"{self._subject()}: expected {self._action_name()} to raise {error.__name__}, "
                f"but it returned {outcome.result!r} and recorded:\n{listing(outcome.events)}"
            )
        if not isinstance(raised, error):
            raise AssertionError(
                f"{self._subject()}: expected {self._action_name()} to raise {error.__name__}, "
                f"but it raised {type(raised).__name__}: {raised}"
            ) from raised
        check_message(raised, match)
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
        return callable_name(self._action[0])

    def _build(self) -> A:
        if self._instance is not None:
            return self._instance
        es_type = cast(type[EventSourced], self.aggregate_type)
        return cast(A, es_type.rebuild(self.aggregate_id, self._history))

    def _subject(self) -> str:
        return f"{self.aggregate_type.__name__} {self.aggregate_id!r}"
