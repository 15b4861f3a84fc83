"""Calling application code that may be sync or async."""

from __future__ import annotations

import inspect
from typing import Any

# sync: from tidings.runner import run_coroutine

__all__ = ["resolved"]


async def resolved(result: Any, what: str) -> Any:
    """What calling `what` returned, awaited when the code was async."""
    if inspect.isawaitable(result):
        return await result  # sync: return run_coroutine(result, what)
    return result
