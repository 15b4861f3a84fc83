"""Running an async handler from blocking code, without a thread per call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["run_coroutine"]

T = TypeVar("T")

_local = threading.local()


def run_coroutine(awaitable: Awaitable[T], what: str) -> T:
    """Run `awaitable` to completion on this thread's own event loop, kept between calls."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        raise RuntimeError(
            f"{what} is async and an event loop is running in this thread; "
            "use the Async variant (for example AsyncMessageBus) from async code"
        )
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
    return runner.run(_await(awaitable))


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
