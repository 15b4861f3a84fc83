# Generated from src/tidings/_async/awaiting.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Calling application code that may be sync or async."""

from __future__ import annotations

import inspect
from typing import Any

from tidings.runner import run_coroutine

__all__ = ["resolved"]


def resolved(result: Any, what: str) -> Any:
    """What calling `what` returned, awaited when the code was async."""
    if inspect.isawaitable(result):
        return run_coroutine(result, what)
    return result
