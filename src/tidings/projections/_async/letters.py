"""The projections' dead letters, in the bus's store, written in the runner's transactions."""

from __future__ import annotations

import weakref
from uuid import UUID

from tidings.codec import Codec
from tidings.dead_letters import AsyncSQLDeadLetters, DeadLetter, DeadLetters
from tidings.projections.projection import letter_handler
from tidings.store._async.base import AsyncStoreTransaction, AsyncTransactional

__all__ = ["AsyncProjectionLetters"]


class AsyncProjectionLetters:
    """The dead letters of projections: the bus's store, of handlers `projection:<name>`.

    SQLite and PostgreSQL stores keep them in their database, in the
    transaction `tx` that moves or parks the projection; a memory store keeps
    them in memory beside it, where there is no transaction to join.
    """

    def __init__(self, store: AsyncTransactional, codec: Codec) -> None:
        self.store: DeadLetters | AsyncSQLDeadLetters
        try:
            self.store = AsyncSQLDeadLetters(store, codec=codec)
        except TypeError:
            self.store = _memory_letters.setdefault(store, DeadLetters())

    async def add(self, tx: AsyncStoreTransaction, letter: DeadLetter) -> None:
        if isinstance(self.store, DeadLetters):
            self.store.add(letter)
        else:
            await self.store.add(letter, tx=tx)

    async def remove(self, tx: AsyncStoreTransaction, letter_id: UUID) -> None:
        if isinstance(self.store, DeadLetters):
            self.store.remove(letter_id)
        else:
            await self.store.remove(letter_id, tx=tx)

    async def get(self, letter_id: UUID) -> DeadLetter:
        if isinstance(self.store, DeadLetters):
            return self.store.get(letter_id)
        return await self.store.get(letter_id)

    async def of(self, tx: AsyncStoreTransaction, name: str) -> list[DeadLetter]:
        """The letters of projection `name`, oldest first."""
        if isinstance(self.store, DeadLetters):
            return self.store.list(handler=letter_handler(name))
        return await self.store.list(handler=letter_handler(name), tx=tx)

    async def forget(
        self, tx: AsyncStoreTransaction, name: str, *, parked_only: bool
    ) -> list[DeadLetter]:
        """Drop `name`'s parked letter (its parking ended), or all its letters (a replay)."""
        dropped = [letter for letter in await self.of(tx, name) if letter.parked or not parked_only]
        for letter in dropped:
            await self.remove(tx, letter.id)
        return dropped


_memory_letters: weakref.WeakKeyDictionary[object, DeadLetters] = weakref.WeakKeyDictionary()
