"""python-cqrs and lato doing the benchmark's dispatch, each in the fastest way it documents.

- python-cqrs is asyncio only. Its mediators are built directly (as its
  `RequestMediator` and `EventMediator` docstrings show) rather than through
  `bootstrap`, which always adds a logging middleware; and its handlers are
  resolved by the cheapest container the `cqrs.Container` protocol allows, one
  that calls the handler class with no arguments.
- lato is measured with its synchronous `Application.execute` and `publish`,
  one transaction context per message, as its documentation shows.

Both are benchmark-only dependencies: `uv sync --group bench`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cqrs
import lato
from cqrs.events import EventMap
from cqrs.mapping.requests import RequestMap

__all__ = [
    "CqrsPing",
    "CqrsPinged",
    "LatoPing",
    "LatoPinged",
    "cqrs_mediators",
    "lato_app",
]

T = TypeVar("T")

# python-cqrs


class CqrsPing(cqrs.Request):
    n: int


class CqrsPinged(cqrs.DomainEvent):
    n: int


class CqrsPingHandler(cqrs.RequestHandler[CqrsPing, Any]):
    """Returns the field itself, not a `cqrs.Response`: the cheapest result it can give."""

    async def handle(self, request: CqrsPing) -> int:
        return request.n


def _cqrs_event_handler(seen: list[int], slot: int) -> type[cqrs.EventHandler[CqrsPinged]]:
    class OnPinged(cqrs.EventHandler[CqrsPinged]):
        async def handle(self, event: CqrsPinged) -> None:
            seen[slot] = event.n

    OnPinged.__qualname__ = OnPinged.__name__ = f"OnPinged{slot}"
    return OnPinged


class _Constructor:
    """A `cqrs.Container` that makes each handler by calling its class."""

    @property
    def external_container(self) -> None:
        return None

    def attach_external_container(self, container: Any) -> None:
        raise NotImplementedError("this container wraps nothing")

    async def resolve(self, type_: type[T]) -> T:
        return type_()


def cqrs_mediators(seen: list[int]) -> tuple[cqrs.RequestMediator, cqrs.EventMediator]:
    """A request mediator for `CqrsPing`, an event mediator with three handlers of `CqrsPinged`."""
    requests: RequestMap[type[CqrsPing]] = RequestMap()
    requests.bind(CqrsPing, CqrsPingHandler)
    events: EventMap[type[CqrsPinged]] = EventMap()
    for slot in range(3):
        events.bind(CqrsPinged, _cqrs_event_handler(seen, slot))
    container = _Constructor()
    return (
        cqrs.RequestMediator(request_map=requests, container=container),
        cqrs.EventMediator(event_map=events, container=container),
    )


# lato


class LatoPing(lato.Command):
    n: int


class LatoPinged(lato.Event):
    n: int


def lato_app(seen: list[int]) -> lato.Application:
    """An application with one handler of `LatoPing` and three of `LatoPinged`."""
    app = lato.Application("bench")

    @app.handler(LatoPing)
    def ping(command: LatoPing) -> int:
        return command.n

    for slot in range(3):
        app.handler(LatoPinged)(_lato_event_handler(seen, slot))
    return app


def _lato_event_handler(seen: list[int], slot: int) -> Any:
    def on_pinged(event: LatoPinged) -> None:
        seen[slot] = event.n

    return on_pinged
