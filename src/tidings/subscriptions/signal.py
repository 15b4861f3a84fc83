"""A wake-up call for readers of the log, safe across threads and event loops."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["CommitSignal"]


class CommitSignal:
    """Counts announced commits, so a reader can wait for the next one without missing any.

    A reader notes `count`, reads the log, and then waits with that count: a
    commit announced in between returns at once, so no wake-up is lost between
    reading and waiting. `head` is the highest position announced. `announce`
    may be called from any thread; blocking readers wait with `wait`, async
    readers (asyncio) with `wait_async`.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.count = 0
        self.head = 0

    def announce(self, position: int = 0) -> None:
        """A commit happened (its last position, when known): wake every waiter."""
        with self._condition:
            self.count += 1
            self.head = max(self.head, position)
            self._condition.notify_all()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its waiter is gone with it
                self._async_waiters.discard((loop, event))

    def wait(self, seen: int, timeout: float) -> bool:
        """Block until `count` differs from `seen` or `timeout` passes; True if it did."""
        with self._condition:
            return self._condition.wait_for(lambda: self.count != seen, timeout)

    async def wait_async(self, seen: int, seconds: float) -> bool:
        """Wait until `count` differs from `seen` or `seconds` pass; True if it did."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._condition:
            if self.count != seen:
                return True
            self._async_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), seconds)
        except TimeoutError:
            pass
        finally:
            with self._condition:
                self._async_waiters.discard(waiter)
        return self.count != seen
