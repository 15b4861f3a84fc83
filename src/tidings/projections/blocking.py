"""Async code given to a blocking runner: refused by name, when registered or when it shows.

The blocking `ProjectionRunner`, and a blocking unit of work's inline
projections, call handlers on threads without an event loop, in a blocking
store's transaction. An `async def` handler there would need an event loop
of its own on every thread, and could not use the transaction's driver
asynchronously anyway: it is refused when the projection is registered,
naming the projection and the handler. A plain `def` that returns an
awaitable shows only when it is called: the awaitable is closed unawaited
(so Python warns of no coroutine never awaited) and the projection parks on
the event with `AwaitableRefused`, rather than move past events it never
applied. The async runner takes both kinds, awaiting what a handler returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Never

from tidings.errors import ConfigurationError
from tidings.projections.projection import Projection

__all__ = ["AwaitableRefused", "refuse_async", "refused"]

_ADVICE = "run it with the async variant (AsyncProjectionRunner, AsyncUnitOfWork)"


class AwaitableRefused(ConfigurationError, TypeError):
    """A blocking runner was given async code, which it cannot await."""


def refuse_async(projection: Projection[Never]) -> None:
    """Raise `AwaitableRefused` if a handler, `setup` or `reset` of `projection` is async."""
    for event_type, handler in projection.handlers().items():
        if _is_async(handler):
            raise AwaitableRefused(
                f"projection {projection.name!r}: its handler of {event_type} "
                f"({_name(handler)}) is async def, and a blocking runner does not await: "
                f"{_ADVICE}, or make the handler a plain def"
            )
    for hook in (projection.setup, projection.reset):
        if _is_async(hook):
            raise AwaitableRefused(
                f"projection {projection.name!r}: {_name(hook)} is async def, and a blocking "
                f"runner does not await: {_ADVICE}, or make it a plain def"
            )


def refused(result: Awaitable[object], fn: object) -> AwaitableRefused:
    """The error for `fn`, which returned `result` to a blocking runner; `result` is closed."""
    what = _name(fn)
    close = getattr(result, "close", None)
    if callable(close):
        close()  # a coroutine never awaited would warn when collected
    return AwaitableRefused(
        f"{what} returned an awaitable, and a blocking runner does not await: "
        f"{_ADVICE}, or make {what} return nothing"
    )


def _is_async(fn: object) -> bool:
    # A function or method, a partial of one, or an object whose `__call__` is async.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__
