"""How often and how patiently a failing handler is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded retries with exponential backoff and full jitter.

    Attempt n (from 1) that fails waits a random time up to
    `min(max_delay, first_delay * 2 ** (n - 1))` before the next one. Only
    exceptions that are instances of `on` are retried; any other fails at once.
    """

    attempts: int = 3
    first_delay: float = 0.05
    max_delay: float = 2.0
    jitter: bool = True
    on: tuple[type[Exception], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.first_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")
        if not self.on or not all(
            isinstance(kind, type) and issubclass(kind, Exception) for kind in self.on
        ):
            raise ValueError(f"on must be a non-empty tuple of exception classes, got {self.on!r}")

    def retries(self, error: Exception, failed_attempt: int) -> bool:
        """Whether attempt number `failed_attempt`, which raised `error`, is tried again."""
        return failed_attempt < self.attempts and isinstance(error, self.on)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number `failed_attempt` failed."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** (failed_attempt - 1))
        return random.uniform(0, ceiling) if self.jitter else ceiling
