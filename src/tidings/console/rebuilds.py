"""Rebuilds started from the console: each run after its request's response, its progress kept.

A rebuild runs as the background task of the POST that started it (the page
is answered first), so it needs no task group of the console's own, which a
console mounted in another application would not get started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

__all__ = ["RebuildProgress", "Rebuilds"]


@dataclass(slots=True)
class RebuildProgress:
    """How far one rebuild has come: `position` of `head`, until `done` (or `error`)."""

    name: str
    position: int = 0
    head: int = 0
    done: bool = False
    error: str | None = None
    started: float = 0.0

    @property
    def percent(self) -> int:
        if self.done and self.error is None:
            return 100
        if self.head <= 0:
            return 0
        return min(99 if not self.done else 100, self.position * 100 // self.head)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "percent": self.percent,
            "done": self.done,
            "error": self.error,
        }


Rebuild = Callable[[str, Callable[[int, int], None]], Awaitable[None]]
"""Replays projection `name`, calling `progress(position, head)` as it goes (a runner's rebuild)."""


class Rebuilds:
    """The rebuilds this console started, one at a time per projection."""

    def __init__(self, rebuild: Rebuild) -> None:
        self._rebuild = rebuild
        self._lock = threading.Lock()
        self._progress: dict[str, RebuildProgress] = {}

    def start(self, name: str) -> Callable[[], Awaitable[None]] | None:
        """The rebuild of `name` to run, its progress kept; None when a rebuild of it still runs."""
        with self._lock:
            running = self._progress.get(name)
            if running is not None and not running.done:
                return None
            progress = RebuildProgress(name, started=time.time())
            self._progress[name] = progress
        return partial(self._run, progress)

    def progress(self, name: str) -> RebuildProgress | None:
        with self._lock:
            return self._progress.get(name)

    async def _run(self, progress: RebuildProgress) -> None:
        def report(position: int, head: int) -> None:
            progress.position, progress.head = position, head

        try:
            await self._rebuild(progress.name, report)
        except Exception as exc:  # shown on the page: the task has no one else to tell
            progress.error = str(exc) or type(exc).__name__
        finally:
            progress.done = True
