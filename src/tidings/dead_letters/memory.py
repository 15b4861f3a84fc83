"""Dead letters kept in process memory: the default, gone when the process ends."""

from __future__ import annotations

import threading
from collections import Counter
from uuid import UUID

from tidings.dead_letters.letter import DeadLetter
from tidings.errors import DeadLetterNotFound

__all__ = ["DeadLetters"]


def _order(letter: DeadLetter) -> tuple[str, str]:
    """Where a letter is listed: by the time it failed, then by id, as the SQL store lists."""
    return letter.failed_at.isoformat(timespec="microseconds"), str(letter.id)


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

    def list(
        self,
        *,
        handler: str | None = None,
        after: UUID | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """The dead letters (of `handler`, if given), oldest first, at most `limit`.

        `after` is a cursor, the last letter of the previous page, as for
        `SQLDeadLetters.list`: a letter no longer there is a `KeyError`.
        """
        with self._lock:
            letters = sorted(self._letters.values(), key=_order)
            cursor = None if after is None else self._letters.get(after)
        if after is not None:
            if cursor is None:
                raise DeadLetterNotFound(after)
            letters = [letter for letter in letters if _order(letter) > _order(cursor)]
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

    def count(self, *, handler: str | None = None) -> int:
        """How many dead letters there are (of `handler`, if given)."""
        with self._lock:
            return sum(handler in (None, letter.handler) for letter in self._letters.values())

    def count_by_handler(self) -> dict[str, int]:
        """How many dead letters each handler has, by handler name; handlers with none left out."""
        with self._lock:
            counts = Counter(letter.handler for letter in self._letters.values())
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self._letters)
