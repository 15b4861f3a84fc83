"""Dead letters kept in process memory: the default, gone when the process ends."""

from __future__ import annotations

import threading
from uuid import UUID

from tidings.dead_letters.letter import DeadLetter
from tidings.errors import DeadLetterNotFound

__all__ = ["DeadLetters"]


class DeadLetters:
    """An in-process dead letter box, safe to share between threads.

    It does no I/O, so its methods are plain functions that both the blocking
    and the async bus call; `SQLDeadLetters` and `AsyncSQLDeadLetters` keep
    letters in the event store's database instead.
    """

    def __init__(self) -> None:
        self._letters: dict[UUID, DeadLetter] = {}
        self._lock = threading.Lock()

    def add(self, letter: DeadLetter) -> None:
        with self._lock:
            self._letters[letter.id] = letter

    def list(self, *, handler: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters (of `handler`, if given), oldest first, at most `limit`."""
        with self._lock:
            letters = sorted(self._letters.values(), key=lambda letter: letter.failed_at)
        if handler is not None:
            letters = [letter for letter in letters if letter.handler == handler]
        return letters if limit is None else letters[:limit]

    def get(self, letter_id: UUID) -> DeadLetter:
        """The dead letter `letter_id`; `DeadLetterNotFound` (a `KeyError`) if there is none."""
        with self._lock:
            try:
                return self._letters[letter_id]
            except KeyError:
                raise DeadLetterNotFound(letter_id) from None

    def remove(self, letter_id: UUID) -> DeadLetter:
        """Drop the dead letter `letter_id` and return it.

        Raises `DeadLetterNotFound` (a `KeyError`) if there is none.
        """
        with self._lock:
            try:
                return self._letters.pop(letter_id)
            except KeyError:
                raise DeadLetterNotFound(letter_id) from None

    def count(self) -> int:
        return len(self._letters)

    def __len__(self) -> int:
        return len(self._letters)
