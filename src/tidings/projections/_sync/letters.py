# Generated from src/tidings/projections/_async/letters.py by tools/unasync.py: edit that file, then run `make unasync`.
"""The projections' dead letters, in the bus's store, written in the runner's transactions."""

from __future__ import annotations

import weakref
from typing import Any
from uuid import UUID

from tidings.codec import Codec
from tidings.dead_letters import SQLDeadLetters, DeadLetter, DeadLetters
from tidings.projections.projection import letter_handler

__all__ = ["ProjectionLetters"]


class ProjectionLetters:
    """The dead letters of projections: the bus's store, of handlers `projection:<name>`.

    SQLite and PostgreSQL stores keep them in their database, in the
    transaction `tx` that moves or parks the projection; a memory store keeps
    them in memory beside it, where there is no transaction to join.
    """

    def __init__(self, store: Any, codec: Codec) -> None:
        self.store: DeadLetters | SQLDeadLetters
        try:
            self.store = SQLDeadLetters(store, codec=codec)
        except TypeError:
            self.store = _memory_letters.setdefault(store, DeadLetters())

    def add(self, tx: Any, letter: DeadLetter) -> None:
        if isinstance(self.store, DeadLetters):
            self.store.add(letter)
        else:
            self.store.add(letter, tx=tx)

    def remove(self, tx: Any, letter_id: UUID) -> None:
        if isinstance(self.store, DeadLetters):
            self.store.remove(letter_id)
        else:
            self.store.remove(letter_id, tx=tx)

    def get(self, letter_id: UUID) -> DeadLetter:
        if isinstance(self.store, DeadLetters):
            return self.store.get(letter_id)
        return self.store.get(letter_id)

    def of(self, tx: Any, name: str) -> list[DeadLetter]:
        """The letters of projection `name`, oldest first."""
        if isinstance(self.store, DeadLetters):
            return self.store.list(handler=letter_handler(name))
        return self.store.list(handler=letter_handler(name), tx=tx)

    def forget(self, tx: Any, name: str, *, parked_only: bool) -> list[DeadLetter]:
        """Drop `name`'s parked letter (its parking ended), or all its letters (a replay)."""
        dropped = [letter for letter in self.of(tx, name) if letter.parked or not parked_only]
        for letter in dropped:
            self.remove(tx, letter.id)
        return dropped


_memory_letters: weakref.WeakKeyDictionary[Any, DeadLetters] = weakref.WeakKeyDictionary()
