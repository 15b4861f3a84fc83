"""Reading `$all` from a checkpoint: catch up in batches, then follow new commits as they land."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Self

import anyio  # sync: import time

from tidings.store._async.base import AsyncEventReader
from tidings.store.records import RecordedEvent
from tidings.subscriptions.listener import watch_commits
from tidings.subscriptions.signal import CommitSignal

__all__ = ["AsyncSubscription"]

# While a PostgreSQL commit that was announced is not yet readable (an older transaction
# is still running), the reader looks again after this wait, doubled up to the longest.
# A look is one indexed query; waiting longer would add to the latency of every event
# behind a transaction that ends at any moment.
_FIRST_RETRY = 0.0002
_LONGEST_RETRY = 0.005


class AsyncSubscription:
    """Events of `$all` after `position`, optionally only of some categories or types.

    Catching up and following live are one loop: read the next batch after
    the last position delivered; when there is none, wait for a commit to be
    announced (in process for memory and SQLite, LISTEN/NOTIFY on PostgreSQL)
    or for `poll_interval`, which finds commits made where no announcement
    reaches (another process writing to a SQLite file, a lost LISTEN
    connection). As every read starts after the last position delivered, and
    the store never shows a position before an earlier one it has not yet
    shown, there is no gap and no duplicate at the hand-over or anywhere else.

    Pass a shared `signal` when many subscriptions follow one store; without
    one the subscription watches the store itself until `aclose`.
    """

    def __init__(
        self,
        store: AsyncEventReader,
        *,
        after: int = 0,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        signal: CommitSignal | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.store = store
        self.position = after
        self.categories = None if categories is None else frozenset(categories)
        self.types = None if types is None else frozenset(types)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.signal = signal if signal is not None else CommitSignal()
        self._stop_watching = watch_commits(store, self.signal) if signal is None else None
        self._retry = _FIRST_RETRY
        self._readable = 0  # every position up to this one was readable when last read

    async def read(self) -> list[RecordedEvent]:
        """The next batch after `position`, perhaps empty; `position` moves past it."""
        announced = self.signal.head
        batch: list[RecordedEvent] = await self.store.read_all(
            after=self.position, limit=self.batch_size, categories=self.categories, types=self.types
        )
        if batch:
            self.position = batch[-1].position
            if self.position >= announced:
                self._readable = max(self._readable, announced)
        return batch

    async def wait(self, seen: int) -> None:
        """Wait for a commit announced after the signal's count `seen`, or `poll_interval`.

        A commit announced with its last position may not be readable yet:
        PostgreSQL shows it once every older transaction has ended. Until a
        probe finds that position readable, wait briefly and let the caller
        read again, backing off up to 5 ms; once it is, the
        caller's next read is sure to include it (or to have nothing of its
        categories and types up to it).
        """
        announced = self.signal.head
        if announced > self._readable:
            probe = await self.store.read_all(after=announced - 1, limit=1)
            if probe and probe[0].position >= announced:
                self._readable = announced
                self._retry = _FIRST_RETRY
                return
            await anyio.sleep(self._retry)  # sync: time.sleep(self._retry)
            self._retry = min(self._retry * 2, self.poll_interval, _LONGEST_RETRY)
            return
        self._retry = _FIRST_RETRY
        interval = self.poll_interval
        await self.signal.wait_async(seen, interval)  # sync: self.signal.wait(seen, interval)

    async def batches(self) -> AsyncIterator[list[RecordedEvent]]:
        """Every batch from `position` on, forever: those stored, then those to come."""
        while True:
            seen = self.signal.count
            batch = await self.read()
            if batch:
                yield batch
            else:
                await self.wait(seen)

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        async for batch in self.batches():
            for record in batch:
                yield record

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching the store (when this subscription watches it itself)."""
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
