"""The figures a scenario reports: who ran, what was killed, how much, how long, what went wrong.

Each scenario prints one line (visible with `pytest -s` or in the captured
output of a failure) and records the figures as test properties, so a run's
junit XML carries them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Figures"]


@dataclass(slots=True)
class Figures:
    """The figures of one scenario run; `report` prints and records them."""

    scenario: str
    workers: int = 0
    kills: int = 0
    events: int = 0
    lost: int = 0
    doubled: int = 0
    started: float = field(default_factory=time.monotonic)

    def report(self, record_property: Callable[[str, object], None]) -> str:
        seconds = time.monotonic() - self.started
        line = (
            f"{self.scenario}: workers {self.workers}, kills {self.kills}, events {self.events}, "
            f"{seconds:.1f} s, lost {self.lost}, doubled {self.doubled}"
        )
        for name in ("workers", "kills", "events", "lost", "doubled"):
            record_property(name, getattr(self, name))
        record_property("seconds", round(seconds, 2))
        print(f"\n[{line}]", end=" ")
        return line
