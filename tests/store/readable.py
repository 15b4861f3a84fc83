"""Waiting until a test's own writes show in `$all`, on a server others share.

PostgreSQL shows a commit to readers of `$all` only once every transaction
that began before it has ended (the store never skips a position). On a
shared server another session's open transaction can hold a test's writes
back for seconds, so a test that reads `$all` right after writing waits
here first. Memory and SQLite commit one transaction at a time: they return
at once.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

from tidings.store import Watermark

TIMEOUT = 15.0


class _Store(Protocol):
    def watermark(self) -> Watermark: ...


class _AsyncStore(Protocol):
    async def watermark(self) -> Watermark: ...


def wait_readable(store: _Store, position: int | None = None) -> None:
    """Until `$all` shows every position through `position` (the last committed, by default)."""
    deadline = time.monotonic() + TIMEOUT
    mark = store.watermark()
    target = mark.last_position if position is None else position
    while mark.head < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"position {target} not readable after {TIMEOUT} s: {mark}")
        time.sleep(0.005)
        mark = store.watermark()


async def readable(store: _AsyncStore, position: int | None = None) -> None:
    """The async twin of `wait_readable`."""
    deadline = time.monotonic() + TIMEOUT
    mark = await store.watermark()
    target = mark.last_position if position is None else position
    while mark.head < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"position {target} not readable after {TIMEOUT} s: {mark}")
        await anyio.sleep(0.005)
        mark = await store.watermark()
