"""Warning when readers of the log are held back: an open transaction hides committed events.

On PostgreSQL a transaction that has written holds back, until it ends, every
event committed after it began writing (see `EventStore.watermark`): the
projections' lag does not count them and they wait, unseen. That is what
keeps readers from skipping an event, and it is fine for a moment; a
transaction left open for minutes stalls every projection silently. A running
runner therefore checks the store's watermark and logs a warning once readers
have been held back for `held_back_warning` seconds, and again each such
period while it lasts.
"""

from __future__ import annotations

import logging
import math
import time

from tidings.errors import TidingsError
from tidings.projections._async.base import AsyncRunnerBase

__all__ = ["AsyncWatermarkWatch"]

logger = logging.getLogger("tidings.projections")


class AsyncWatermarkWatch(AsyncRunnerBase):
    """The runner's check of its store's watermark, while it runs."""

    async def _watch_watermark(self) -> None:
        limit = self.held_back_warning
        since: float | None = None  # when this runner first saw readers held back
        warned = -math.inf
        while not self._stopped:
            await self._sleep(min(limit / 2, 10.0))
            if self._stopped:
                return
            try:
                mark = await self.store.watermark()
            except TidingsError:
                continue  # an unreachable store: the workers report it
            now = time.monotonic()
            if not mark.held_back:
                since = None
                continue
            since = now if since is None else since
            held_for = max(mark.held_for or 0.0, now - since)
            if held_for >= limit and now - warned >= limit:
                warned = now
                logger.warning(
                    "readers of the log are held back: %d committed events wait behind a"
                    " transaction open for %.0f s (readable up to position %d, committed up"
                    " to %d); projections see them once it ends",
                    mark.held_back,
                    held_for,
                    mark.head,
                    mark.last_position,
                )
