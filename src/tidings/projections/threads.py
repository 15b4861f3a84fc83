"""Threads standing in for a task group in the blocking projection runner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["TaskThreads"]


class TaskThreads:
    """Starts each function on a thread of its own; leaving the block waits for all of them."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> TaskThreads:
        return self

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, name=f"tidings {args}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for thread in self._threads:
            thread.join()
