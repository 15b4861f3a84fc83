"""A history of operations as clients saw them, and the checks run over it.

Each operation is recorded when it is invoked and again when it completes
with one of three outcomes: `ok` (the system said it happened), `failed`
(the system said it did not happen) and `unknown` (the client cannot tell:
a lost connection, an ambiguous commit, a killed process). A checker then
compares what the system holds with what the history allows: every `ok`
present, no `failed` present, an `unknown` present at most once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "failed", "unknown"]

__all__ = ["History", "Operation", "Outcome", "Violations"]


@dataclass(slots=True)
class Operation:
    """One client operation: what it was, who made it, and how it ended."""

    key: Hashable
    client: str
    invoked_at: float
    completed_at: float | None = None
    outcome: Outcome | None = None
    detail: str = ""


@dataclass(slots=True)
class Violations:
    """What a check found wrong; empty when the system kept the history's promises."""

    lost: list[Hashable] = field(default_factory=list)
    doubled: list[Hashable] = field(default_factory=list)
    unexpected: list[Hashable] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lost or self.doubled or self.unexpected)

    def __str__(self) -> str:
        def head(items: list[Hashable]) -> str:
            return ", ".join(map(repr, items[:10])) + (" …" if len(items) > 10 else "")

        parts = [
            f"{name} {len(items)}: {head(items)}"
            for name, items in (
                ("lost", self.lost),
                ("doubled", self.doubled),
                ("unexpected", self.unexpected),
            )
            if items
        ]
        return "; ".join(parts) or "none"


class History:
    """Operations recorded from any number of threads, keyed by what they wrote."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[Hashable, Operation] = {}

    def invoke(self, key: Hashable, client: str) -> Operation:
        """Record that `client` starts the operation `key` (unique per operation)."""
        operation = Operation(key, client, time.monotonic())
        with self._lock:
            if key in self._operations:
                raise ValueError(f"operation {key!r} is recorded already")
            self._operations[key] = operation
        return operation

    def complete(self, operation: Operation, outcome: Outcome, detail: str = "") -> None:
        """Record how `operation` ended, as its client saw it."""
        with self._lock:
            operation.completed_at = time.monotonic()
            operation.outcome = outcome
            operation.detail = detail

    def operations(self) -> list[Operation]:
        with self._lock:
            return list(self._operations.values())

    def count(self, outcome: Outcome | None) -> int:
        """How many operations ended with `outcome` (None: still in flight)."""
        return sum(1 for op in self.operations() if op.outcome == outcome)

    def check(self, observed: Iterable[Hashable]) -> Violations:
        """Compare the keys the system holds (each time it holds one) with the history.

        An `ok` key must be there once; a `failed` one never; an `unknown` or
        still-running one at most once; a key no operation wrote never.
        """
        seen = Counter(observed)
        found = Violations()
        operations = {op.key: op for op in self.operations()}
        for key, times in seen.items():
            operation = operations.get(key)
            if operation is None or operation.outcome == "failed":
                found.unexpected.append(key)
            elif times > 1:
                found.doubled.append(key)
        found.lost.extend(
            key for key, op in operations.items() if op.outcome == "ok" and key not in seen
        )
        return found

    def summary(self) -> str:
        counts = Counter(op.outcome or "running" for op in self.operations())
        return ", ".join(f"{name} {counts[name]}" for name in sorted(counts))
