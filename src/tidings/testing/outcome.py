"""What a bus scenario saw while the bus handled the message under test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidings.dead_letters import DeadLetter
from tidings.messages import Envelope, Event

__all__ = ["BusOutcome"]


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
