# Generated from src/tidings/dead_letters/_async/base.py by tools/unasync.py: edit that file, then run `make unasync`.
"""The protocol every dead-letter store implements."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from tidings.dead_letters.letter import DeadLetter

__all__ = ["DeadLetterStore"]


class DeadLetterStore(Protocol):
    """Where a bus keeps the events its handlers failed on, to list, retry or drop them."""

    def add(self, letter: DeadLetter) -> None: ...

    def list(
        self, *, handler: str | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        """The dead letters (of `handler`, if given), oldest first, at most `limit`."""
        ...

    def get(self, letter_id: UUID) -> DeadLetter:
        """The dead letter `letter_id`; `KeyError` if there is none."""
        ...

    def remove(self, letter_id: UUID) -> DeadLetter:
        """Drop the dead letter `letter_id` and return it; `KeyError` if there is none."""
        ...

    def count(self) -> int: ...
