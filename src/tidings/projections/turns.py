"""How much a catching-up projection writes per transaction on a store with one writer at a time.

SQLite lets one connection write at a time, across processes. A runner
catching up a backlog back to back would hold that lock almost without a
break, and writers of other processes, whose retries come every few
milliseconds, would seldom find it free: they time out. On such a store
(one that says `write_turn`) the runner sizes its batches so that each
write transaction lasts about `write_turn` seconds, from how long the last
took, and leaves the lock free before the next: `write_gap` seconds after a
whole turn, in proportion after a shorter one, so that pausing never costs
more than `write_gap / write_turn` of the catch-up's time (6% on SQLite).
Other stores keep the runner's `batch_size` and never pause.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WriteTurns"]

# The first batch on a one-writer store: small, as nothing is known yet of the handlers' cost.
_FIRST_SIZE = 32


class WriteTurns:
    """The batch size to read next (`size`), and the pause to leave while behind (`pause`)."""

    def __init__(self, store: Any, batch_size: int) -> None:
        turn = getattr(store, "write_turn", None)
        self.turn: float | None = float(turn) if isinstance(turn, int | float) else None
        gap = getattr(store, "write_gap", 0.0)
        self.gap = float(gap) if self.turn is not None and isinstance(gap, int | float) else 0.0
        self.limit = batch_size
        self.size = batch_size if self.turn is None else min(batch_size, _FIRST_SIZE)
        self.pause = 0.0

    def took(self, events: int, seconds: float) -> None:
        """A write transaction of `events` events took `seconds`: size the next to fit a turn.

        It changes at most twofold a batch, up or down, so one transaction
        slowed by something else (a busy machine) does not shrink the next
        ones to a few events each; never past `batch_size`.
        """
        if self.turn is None or events <= 0:
            return
        fitting = int(events * self.turn / max(seconds, 1e-6))
        self.size = max(1, self.size // 2, min(self.limit, fitting, self.size * 2))
        self.pause = self.gap * min(1.0, seconds / self.turn)
