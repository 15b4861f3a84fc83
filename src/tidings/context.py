"""The message being handled right now, so that what a handler causes is traced back to it.

The bus sets the current dispatch around each handler call; a unit of work
reads it to stamp correlation and causation ids on the events it commits, and
enlists itself so the bus can collect those events when the handler returns.
Context variables keep concurrent requests (threads or tasks) apart.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Protocol
from uuid import UUID

from tidings.messages import Envelope, Event, Message, utc_from_ns

__all__ = ["Dispatch", "EventSource", "current_cause", "current_dispatch"]


class EventSource(Protocol):
    def collect_new_events(self) -> list[Envelope[Event]]: ...


class Dispatch:
    """A message being handled: its envelope, and the units of work of the current handler call.

    One serves every handler call (and retry) of the message, so that all see
    the same envelope; the bus collects the units of work after each call.

    A message handed to the bus bare gets its envelope (a fresh id, a
    timestamp) only when something reads it: a handler taking an `Envelope`,
    middleware, a unit of work stamping ids on what it commits, a dead letter.
    Most handlers read nothing, and building the envelope was most of the cost
    of dispatching a message. Once built it is the same envelope every time,
    and its `occurred_at` is when the message was handed over, not when it
    was built.

    A bare message handed over while another is being handled (its `cause`)
    continues that conversation: its envelope takes the cause's correlation
    id, and the cause's id as its causation.
    """

    __slots__ = (
        "_cause",
        "_correlation_id",
        "_envelope",
        "_handed_over_ns",
        "_headers",
        "message",
        "sources",
    )
    message: Message
    sources: list[EventSource] | None
    _envelope: Envelope[Message] | None
    _cause: Dispatch | None
    _correlation_id: UUID | None
    _headers: dict[str, str] | None
    _handed_over_ns: int

    def __init__(
        self,
        handed: Message | Envelope[Message],
        correlation_id: UUID | None = None,
        headers: dict[str, str] | None = None,
        cause: Dispatch | None = None,
    ) -> None:
        """A message handed to the bus now, in its envelope or bare.

        For a bare message `correlation_id` (which wins over the cause's),
        `headers` and `cause` are kept for its envelope, to be built if it is
        ever read. An envelope is used as given.
        """
        if isinstance(handed, Envelope):
            self.message = handed.message
            self._envelope = handed
        else:
            self.message = handed
            self._envelope = None
            self._cause = cause
            self._correlation_id = correlation_id
            self._headers = headers
            self._handed_over_ns = time.time_ns()
        self.sources = None

    @property
    def envelope(self) -> Envelope[Message]:
        envelope = self._envelope
        if envelope is None:
            correlation_id, causation_id = self._correlation_id, None
            if self._cause is not None:
                cause = self._cause.envelope
                correlation_id = correlation_id or cause.correlation_id
                causation_id = cause.message_id
                self._cause = None  # held no longer than needed
            envelope = self._envelope = Envelope.new(
                self.message,
                correlation_id=correlation_id,
                causation_id=causation_id,
                headers=self._headers,
                occurred_at=utc_from_ns(self._handed_over_ns),
            )
        return envelope

    def enlist(self, source: EventSource) -> None:
        if self.sources is None:
            self.sources = [source]
        elif not any(known is source for known in self.sources):
            self.sources.append(source)

    def collect(self) -> list[Envelope[Event]]:
        """The events committed during the handler call, in commit order.

        The units of work are let go, so the next call starts with none.
        """
        sources, self.sources = self.sources, None
        collected: list[Envelope[Event]] = []
        for source in sources or ():
            collected.extend(source.collect_new_events())
        return collected

    def forget(self) -> None:
        """Let the units of work of a failed call go without taking their events.

        A failed command hands nothing on.
        """
        self.sources = None


_current: ContextVar[Dispatch | None] = ContextVar("tidings_dispatch", default=None)


def current_dispatch() -> Dispatch | None:
    """The dispatch in progress in this thread or task, if any."""
    return _current.get()


def current_cause() -> Envelope[Message] | None:
    """The envelope of the message being handled here, if any.

    What is sent or scheduled now continues its conversation: its correlation
    id, and its id as the causation.
    """
    dispatch = _current.get()
    return None if dispatch is None else dispatch.envelope


# The context variable's own methods rather than wrappers: the bus calls them
# around every handler call, and a wrapper would double their cost.
set_dispatch = _current.set
reset_dispatch = _current.reset
