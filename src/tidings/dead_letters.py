"""Messages whose handler kept failing, kept so they can be inspected, retried or dropped."""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tidings.messages import Envelope, Message, new_id, utc_now

__all__ = ["DeadLetter", "DeadLetters"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that one handler failed to process after every attempt."""

    id: UUID
    envelope: Envelope[Message]
    handler: str
    error: str
    traceback: str
    attempts: int
    failed_at: datetime

    @property
    def correlation_id(self) -> UUID:
        return self.envelope.correlation_id

    @staticmethod
    def of(
        envelope: Envelope[Message], handler: str, error: BaseException, attempts: int
    ) -> DeadLetter:
        return DeadLetter(
            id=new_id(),
            envelope=envelope,
            handler=handler,
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
            attempts=attempts,
            failed_at=utc_now(),
        )


class DeadLetters:
    """An in-process dead letter box, safe to share between threads."""

    def __init__(self) -> None:
        self._letters: dict[UUID, DeadLetter] = {}
        self._lock = threading.Lock()

    def add(self, letter: DeadLetter) -> None:
        with self._lock:
            self._letters[letter.id] = letter

    def list(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        with self._lock:
            return sorted(self._letters.values(), key=lambda letter: letter.failed_at)

    def get(self, letter_id: UUID) -> DeadLetter:
        with self._lock:
            try:
                return self._letters[letter_id]
            except KeyError:
                raise KeyError(f"no dead letter {letter_id}") from None

    def remove(self, letter_id: UUID) -> DeadLetter:
        with self._lock:
            try:
                return self._letters.pop(letter_id)
            except KeyError:
                raise KeyError(f"no dead letter {letter_id}") from None

    def __len__(self) -> int:
        return len(self._letters)
