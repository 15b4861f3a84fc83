"""`console_app`: the console as a Starlette application, alone or mounted in another app."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TypeGuard, cast, overload

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tidings._async.bus import AsyncMessageBus
from tidings._sync.bus import MessageBus
from tidings.console.access import (
    Access,
    AsyncLetterStore,
    LetterStore,
    async_access,
    blocking_access,
)
from tidings.console.errors import ConsoleError
from tidings.console.pages.events import event_routes
from tidings.console.pages.letters import letter_routes
from tidings.console.pages.projections import projection_routes
from tidings.console.pages.tail import tail_routes
from tidings.console.security import TokenGuard
from tidings.console.state import Console
from tidings.errors import StoreUnavailable
from tidings.projections import Projection
from tidings.store import (
    AsyncEventStore,
    AsyncReadModelTransaction,
    EventStore,
    ReadModelTransaction,
)

__all__ = ["console_app"]

_STATIC = Path(__file__).parent / "static"

Projections = (
    Sequence[Projection[ReadModelTransaction]] | Sequence[Projection[AsyncReadModelTransaction]]
)
"""A console's projections, of its store's kind (as `console_app`'s overloads say)."""


@overload
def console_app(
    store: EventStore,
    projections: Sequence[Projection[ReadModelTransaction]] = (),
    *,
    bus: MessageBus | None = None,
    dead_letters: LetterStore | None = None,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    page_size: int = 50,
    tail_seconds: float = 30.0,
    tail_interval: float = 0.2,
    title: str = "tidings console",
) -> Starlette: ...


@overload
def console_app(
    store: AsyncEventStore,
    projections: Sequence[Projection[AsyncReadModelTransaction]] = (),
    *,
    bus: AsyncMessageBus | None = None,
    dead_letters: AsyncLetterStore | None = None,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    page_size: int = 50,
    tail_seconds: float = 30.0,
    tail_interval: float = 0.2,
    title: str = "tidings console",
) -> Starlette: ...


def console_app(
    store: EventStore | AsyncEventStore,
    projections: Projections = (),
    *,
    bus: MessageBus | AsyncMessageBus | None = None,
    dead_letters: LetterStore | AsyncLetterStore | None = None,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    page_size: int = 50,
    tail_seconds: float = 30.0,
    tail_interval: float = 0.2,
    title: str = "tidings console",
) -> Starlette:
    """The web console of `store`, blocking or async, as an ASGI application.

    An async store (`AsyncSQLiteStore`, `AsyncPostgresStore`,
    `AsyncMemoryStore`) takes an `AsyncMessageBus` and async dead letters,
    and is read on the server's event loop; a blocking one takes their
    blocking kinds, and is read in worker threads.
    `projections` are the application's (their status, pause, resume and
    rebuild act on their rows in the store, seen by runners in any
    process); `bus` retries bus handlers' dead letters; `dead_letters` are
    those of the store by default (`SQLDeadLetters` on SQLite and
    PostgreSQL, the projections' own beside a memory store). `read_only`
    hides every action and refuses them (403). With `token`, each request
    must show it (`?token=` once, then a cookie; or `Authorization: Bearer`).
    With `allowed_hosts`, a request naming another host (`Host:`) is refused
    (400): a page of another site cannot reach the console through a DNS
    name pointed at 127.0.0.1. `tidings console` sets them on 127.0.0.1.
    The live tail's streams end after `tail_seconds` (the browser resumes
    them), polling the store every `tail_interval` seconds.

    Mount it under a path of your own app (`Mount("/console", console_app(store))`):
    its links follow the mount's path.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    if tail_seconds <= 0 or tail_interval <= 0:
        raise ValueError("tail_seconds and tail_interval must be positive")
    console = Console(
        _access(store, projections, bus, dead_letters),
        read_only=read_only,
        page_size=page_size,
        tail_seconds=tail_seconds,
        tail_interval=tail_interval,
        title=title,
    )

    async def refuse(request: Request, status: int, message: str) -> Response:
        return console.page(request, "error.html", status, status=status, message=message)

    async def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return await refuse(request, exc.status, exc.message)

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        return await refuse(request, 503, f"the event store cannot be reached now: {exc}")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such page", 405: "this page does not take that method"}.get(
            exc.status_code, str(exc.detail)
        )
        return await refuse(request, exc.status_code, message)

    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    if token is not None:
        if not token:
            raise ValueError("an access token is not empty")
        middleware.append(Middleware(BaseHTTPMiddleware, dispatch=TokenGuard(token, refuse)))
    routes = [
        *event_routes(console),
        *projection_routes(console),
        *letter_routes(console),
        *tail_routes(console),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ConsoleError: console_error,
            HTTPException: http_error,
            StoreUnavailable: store_unavailable,
        },
    )
    app.state.console = console
    return app


def _access(
    store: EventStore | AsyncEventStore,
    projections: Projections,
    bus: MessageBus | AsyncMessageBus | None,
    dead_letters: LetterStore | AsyncLetterStore | None,
) -> Access:
    """The access of `store`'s kind, chosen once: a bus or letters of the other kind is refused."""
    if _async_store(store):
        if isinstance(bus, MessageBus) or not _async_letters(dead_letters):
            raise TypeError("an async store's console takes an AsyncMessageBus and async letters")
        # Of the store's kind, as the overloads ask; the runner refuses the other at registration.
        mine = cast(Sequence[Projection[AsyncReadModelTransaction]], projections)
        return async_access(store, mine, bus, dead_letters)
    if not _blocking_store(store) or isinstance(bus, AsyncMessageBus):
        raise TypeError("a blocking store's console takes a MessageBus and blocking letters")
    if not _blocking_letters(dead_letters):
        raise TypeError("a blocking store's console takes a MessageBus and blocking letters")
    blocking = cast(Sequence[Projection[ReadModelTransaction]], projections)
    return blocking_access(store, blocking, bus, dead_letters)


# The kind of a store or letter box is told by its methods, as the protocols say no more.
def _async_store(store: EventStore | AsyncEventStore) -> TypeGuard[AsyncEventStore]:
    return inspect.iscoroutinefunction(store.read_all)


def _blocking_store(store: EventStore | AsyncEventStore) -> TypeGuard[EventStore]:
    return not inspect.iscoroutinefunction(store.read_all)


def _async_letters(
    letters: LetterStore | AsyncLetterStore | None,
) -> TypeGuard[AsyncLetterStore | None]:
    return letters is None or inspect.iscoroutinefunction(letters.list)


def _blocking_letters(
    letters: LetterStore | AsyncLetterStore | None,
) -> TypeGuard[LetterStore | None]:
    return letters is None or not inspect.iscoroutinefunction(letters.list)
