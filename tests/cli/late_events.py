"""An event class that only `--import tests.cli.late_events` loads into the process."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.messages import Event


@dataclass(frozen=True)
class GiftWrapped(Event, type_name="cli.GiftWrapped"):
    order_id: str
    paper: str = "plain"  # added later, with a default: stored events lack it
