"""Middleware that ships with tidings: logging each message with its ids and timing."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.messages import Envelope, Message
from tidings.observability.logs import envelope_fields

__all__ = ["AsyncLogMessages"]


class AsyncLogMessages:
    """Logs every message the bus handles: type, ids, outcome and duration.

    A failure is logged at WARNING with its exception type and re-raised unchanged.
    Each record carries the message's ids as `extra` fields (see
    `tidings.observability.logs`).
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("tidings.messages")
        self.level = level

    async def __call__(
        self,
        envelope: Envelope[Message],
        call_next: Callable[[Envelope[Message]], Awaitable[Any]],
    ) -> Any:
        started = time.perf_counter()
        try:
            result = await call_next(envelope)
        except Exception as exc:
            self.logger.warning(
                "%s %s failed after %.2f ms: %s (correlation %s, causation %s)",
                type(envelope.message).__name__,
                envelope.message_id,
                (time.perf_counter() - started) * 1000,
                type(exc).__name__,
                envelope.correlation_id,
                envelope.causation_id,
                extra=envelope_fields(envelope),
            )
            raise
        if self.logger.isEnabledFor(self.level):
            self.logger.log(
                self.level,
                "%s %s handled in %.2f ms (correlation %s, causation %s)",
                type(envelope.message).__name__,
                envelope.message_id,
                (time.perf_counter() - started) * 1000,
                envelope.correlation_id,
                envelope.causation_id,
                extra=envelope_fields(envelope),
            )
        return result
