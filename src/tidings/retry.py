"""How often and how patiently a failing event handler is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded retries with exponential backoff and full jitter.

    Attempt n (from 1) that fails waits a random time up to
    `min(max_delay, first_delay * 2 ** (n - 1))` before the next one.
    """

    attempts: int = 3
    first_delay: float = 0.05
    max_delay: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.first_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number `failed_attempt` failed."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** (failed_attempt - 1))
        return random.uniform(0, ceiling) if self.jitter else ceiling
