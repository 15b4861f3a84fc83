"""Reading a projection's next page of the log while its current batch is applied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec

import anyio  # sync: from tidings.projections.threads import TaskThreads

from tidings.store.records import RecordedEvent
from tidings.subscriptions._async.subscription import AsyncSubscription

__all__ = ["AsyncReadAhead", "Page"]

P = ParamSpec("P")


class Page:
    """A page read ahead: its events, the batch size it was read with, the commit count before."""

    __slots__ = ("events", "seen", "size")

    def __init__(self, events: list[RecordedEvent], size: int, seen: int) -> None:
        self.events = events
        self.size = size
        self.seen = seen


class AsyncReadAhead:
    """The page after the batch in hand, read from `subscription` while that batch is applied.

    Catching up on a store that says `read_ahead` (PostgreSQL), a batch's
    statements and the next page's read wait on different connections to
    the server, so reading the next page while the batch runs takes the read
    off the catch-up's path. Where reads run in this process (SQLite,
    memory), the two would only take turns on it, and pay for the turns:
    there the runner reads after each batch. The page is only a guess that the batch ends where it
    was read from: the caller `take`s it only once its checkpoint has moved
    to that end, and `discard`s it otherwise (a batch parked or dead-lettered
    part-way, or rolled back), which puts the subscription back at the
    checkpoint so the events after it are read again.
    """

    def __init__(self, subscription: AsyncSubscription, commits: Callable[[], int]) -> None:
        self.subscription = subscription
        self._commits = commits
        self._page: Page | None = None

    async def overlapped(
        self, work: Callable[P, Awaitable[None]], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Run `work` while the next page is read; its error is raised as it is.

        The page is kept only if `work` returns: one read after a failure
        would start past events the checkpoint has not passed.
        """
        failure: Exception | None = None
        # Not raising inside the task group keeps `work`'s error unwrapped (`Fenced` above all).
        async with anyio.create_task_group() as tasks:  # sync: with TaskThreads() as tasks:
            tasks.start_soon(self._read)
            try:
                await work(*args, **kwargs)
            except Exception as exc:
                failure = exc
        if failure is not None:
            self._page = None
            raise failure

    def take(self) -> Page | None:
        """The page read ahead, if any, now the caller's; None: read it now."""
        page, self._page = self._page, None
        return page

    def discard(self, position: int) -> None:
        """Drop any page read ahead; the next read starts after `position`, the checkpoint."""
        self._page = None
        self.subscription.position = position

    async def _read(self) -> None:
        seen = self._commits()
        size = self.subscription.batch_size
        try:
            events = await self.subscription.read()
        except Exception:  # read again in the caller's loop, which raises a lasting error
            return
        self._page = Page(events, size, seen)
