"""Expected events: compared whole, or matched by type and some fields with `like`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tidings.messages import Event

__all__ = ["EventMatcher", "Expected", "check_events", "check_message", "like"]

E = TypeVar("E", bound=Event)


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
        reasons = field_differences(event, self.fields)
        if self.where is not None and not self.where(event):
            reasons.append(f"where={callable_name(self.where)} is false for it")
        return reasons

    def __repr__(self) -> str:
        shown = [f"{name}={value!r}" for name, value in self.fields.items()]
        if self.where is not None:
            shown.append(f"where={callable_name(self.where)}")
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


def check_events(subject: str, expected: Sequence[Expected], actual: Sequence[Event]) -> None:
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
            reasons = mismatches(expected[index], actual[index])
            if reasons:
                differences.append(f"  {index + 1}: " + "; ".join(reasons))
    if differences:
        raise AssertionError(
            "\n".join(
                [
                    f"{subject}: the new events are not those expected",
                    f"expected {count(len(expected))}:",
                    listing(expected),
                    f"got {count(len(actual))}:",
                    listing(actual),
                    "differences:",
                    *differences,
                ]
            )
        )


def mismatches(expected: Expected, actual: Event) -> list[str]:
    if isinstance(expected, EventMatcher):
        return expected.mismatches(actual)
    if type(actual) is not type(expected):
        return [f"expected {type(expected).__name__}, got {type(actual).__name__}"]
    if expected == actual:
        return []
    if dataclasses.is_dataclass(expected):
        values = {f.name: getattr(expected, f.name) for f in dataclasses.fields(expected)}
        reasons = field_differences(actual, values)
        if reasons:
            return reasons
    return [f"expected {expected!r}, got {actual!r}"]


def field_differences(event: Event, values: Mapping[str, Any]) -> list[str]:
    reasons = []
    for name, wanted in values.items():
        found = getattr(event, name)
        # Expected value on the left, so `mock.ANY` and custom matchers get to decide.
        if wanted != found:
            reasons.append(f"{name}: expected {wanted!r}, got {found!r}")
    return reasons


def check_message(exc: BaseException, match: str | None) -> None:
    if match is not None and not re.search(match, str(exc)):
        raise AssertionError(
            f"{type(exc).__name__} was raised, but its message {str(exc)!r} "
            f"does not match {match!r}"
        ) from exc


def listing(events: Sequence[Expected]) -> str:
    if not events:
        return "  (none)"
    return "\n".join(f"  {i}. {event!r}" for i, event in enumerate(events, start=1))


def count(n: int) -> str:
    return "no events" if n == 0 else f"{n} event" + ("" if n == 1 else "s")


def callable_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
