"""Durable event handlers: a Router's event handlers run from the log with a checkpoint each.

The bus runs event handlers in process, right after the command's commit; if
the process dies in between, they never run. Handlers that must run put on a
Router of their own and given to a projection runner instead run from the
log: after a crash they pick up where their checkpoint stands (at least
once, so they should be idempotent by `envelope.message_id`)::

    runner = ProjectionRunner(store, durable_handlers(router, dependencies={...}))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from tidings.context import Dispatch, reset_dispatch, set_dispatch
from tidings.handlers import BoundHandler, Router, bind_handlers
from tidings.messages import Envelope, Event, Message
from tidings.projections.projection import EventHandler, OnFailure, Projection
from tidings.retry import Retry

__all__ = ["HandlerProjection", "durable_handlers"]


def durable_handlers(
    *routers: Router,
    dependencies: Mapping[str | type, Any] | None = None,
    retry: Retry | None = None,
    partitions: int = 1,
) -> list[HandlerProjection]:
    """One projection per event handler of `routers`, named after the handler.

    With `partitions` above 1 each is split by stream (see `Projection.partitions`).

    Dependencies are bound as the bus binds them (a `ConfigurationError`
    names anything missing). As on the bus, a handler that keeps failing is
    dead-lettered (in the runner's `dead_letters`, the bus's store) and the others go on.
    """
    table = bind_handlers(routers, dependencies or {}, retry or Retry())
    if table.single:
        names = ", ".join(sorted(t.__qualname__ for t in table.single))
        raise ValueError(f"durable handlers are event handlers; these are not: {names}")
    return [HandlerProjection(bound, partitions) for bound in table.events]


class HandlerProjection(Projection[object]):
    """One bus event handler, run from the log (at least once).

    It runs the handler, not SQL of its own, so it takes either kind of
    transaction: both runners take it, and the blocking one refuses an
    `async def` handler when it is registered.
    """

    transactional = False
    on_failure = OnFailure.DEAD_LETTER

    def __init__(self, bound: BoundHandler, partitions: int = 1) -> None:
        self.name = bound.name
        self.retry = bound.retry  # type: ignore[misc]
        self.partitions = partitions  # type: ignore[misc]
        self._bound = bound
        self._asynchronous = bound.is_async

    def reset(self, tx: object) -> None:
        """Nothing to empty: a rebuild runs the handler again over the whole log."""

    def handlers(self) -> Mapping[str, EventHandler[object]]:
        handler = self._call_async if self._asynchronous else self._call
        event_type = self._bound.spec.message_type
        if event_type is Event:
            return {Event.__event_type__: handler}
        return {cls.__event_type__: handler for cls in _with_subclasses(event_type)}

    def event_types(self) -> Collection[str] | None:
        if self._bound.spec.message_type is Event:
            return None
        return frozenset(self.handlers())

    def _call(self, event: Event, envelope: Envelope[Event], tx: object) -> object:
        # As on the bus: what the handler's unit of work commits is traced to this event.
        token = set_dispatch(Dispatch(envelope))
        try:
            return self._bound.call(envelope)
        finally:
            reset_dispatch(token)

    async def _call_async(self, event: Event, envelope: Envelope[Event], tx: object) -> None:
        token = set_dispatch(Dispatch(envelope))
        try:
            await self._bound.call(envelope)
        finally:
            reset_dispatch(token)


def _with_subclasses(cls: type[Message]) -> list[type[Event]]:
    found: list[type[Event]] = []
    pending: list[type] = [cls]
    while pending:
        current = pending.pop()
        if issubclass(current, Event) and current not in found:
            found.append(current)
            pending.extend(current.__subclasses__())
    return found
