"""The protocol every dead-letter store implements."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from tidings.dead_letters.letter import DeadLetter

__all__ = ["AsyncDeadLetterStore"]


class AsyncDeadLetterStore(Protocol):
    """Where a bus keeps the events its handlers failed on, to list, retry or drop them."""

    async def add(self, letter: DeadLetter) -> None: ...

    async def list(
        self, *, handler: str | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        """The dead letters (of `handler`, if given), oldest first, at most `limit`."""
        ...

    async def get(self, letter_id: UUID) -> DeadLetter:
        """The dead letter `letter_id`; `KeyError` if there is none."""
        ...

    async def remove(self, letter_id: UUID) -> DeadLetter:
        """Drop the dead letter `letter_id` and return it; `KeyError` if there is none."""
        ...

    async def count(self) -> int: ...
