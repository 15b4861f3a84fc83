"""The message being handled right now, so that what a handler causes is traced back to it.

The bus sets the current dispatch around each handler call; a unit of work
reads it to stamp correlation and causation ids on the events it commits, and
enlists itself so the bus can collect those events when the handler returns.
Context variables keep concurrent requests (threads or tasks) apart.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from tidings.messages import Envelope, Event, Message

__all__ = ["Dispatch", "EventSource", "current_dispatch"]


class EventSource(Protocol):
    def collect_new_events(self) -> list[Envelope[Event]]: ...


@dataclass(slots=True)
class Dispatch:
    """One handler call: the envelope it handles and the units of work it used."""

    envelope: Envelope[Message]
    sources: list[EventSource] = field(default_factory=list)

    def enlist(self, source: EventSource) -> None:
        if not any(known is source for known in self.sources):
            self.sources.append(source)

    def collect(self) -> list[Envelope[Event]]:
        """The events committed during this call, in commit order."""
        collected: list[Envelope[Event]] = []
        for source in self.sources:
            collected.extend(source.collect_new_events())
        return collected


_current: ContextVar[Dispatch | None] = ContextVar("tidings_dispatch", default=None)


def current_dispatch() -> Dispatch | None:
    """The dispatch in progress in this thread or task, if any."""
    return _current.get()


def set_dispatch(dispatch: Dispatch | None) -> object:
    return _current.set(dispatch)


def reset_dispatch(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
