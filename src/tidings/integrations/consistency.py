"""Read your writes over HTTP: the log position a request wrote, and reads that wait for it.

A read model kept by a projection runner is eventually consistent: right
after a write it may not show it yet. Session consistency closes the gap
with one number. A request whose messages recorded events answers with the
log position of the last in the `X-Log-Position` header; a later read passes
it back (`?after=<position>`, or the same header) and waits until the read
model has processed the log up to there. Reads that pass nothing do not wait.

::

    positions = WrittenPositions()            # bus middleware: notes positions
    app = FastAPI(lifespan=lifespan)
    answer_written_position(app, positions)    # sets X-Log-Position on answers

    async def lifespan(app):
        use_tidings(app, MessageBus(router, middleware=[positions]), runner=runner)
        ...

    OrdersAfter = Annotated[ReadAfter, Depends(read_your_writes("orders"))]

    @app.get("/orders/{order_id}")
    async def order(order_id: str, after: OrdersAfter) -> ...:
        await after.wait()
        ...

The wait is done on the event loop (`wait_for_projection`), so a thousand
waiting reads hold no worker thread and writes go on being served. A
position past the log's head is refused at once (`PositionBeyondHead`, 400
with `add_error_handlers`); a read model that does not catch up in time, or
is parked, is a 503 with `Retry-After`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Annotated, Any

try:
    import anyio
    import anyio.to_thread
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BeforeValidator, Field
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f'tidings.integrations.consistency needs the web extra: pip install "tidings[web]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.messages import Envelope, Event
from tidings.messages import Message as BusMessage
from tidings.projections import AsyncProjectionRunner, ProjectionRunner, ProjectionTimeout

__all__ = [
    "POSITION_HEADER",
    "LogPosition",
    "ReadAfter",
    "WrittenPositions",
    "answer_written_position",
    "read_your_writes",
    "wait_for_projection",
]

POSITION_HEADER = "X-Log-Position"
"""The log position of the last event a request recorded; pass it back to read it."""

MAX_POSITION = 2**63 - 1
"""The largest log position (a 64-bit integer)."""

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _whole_number(value: object) -> object:
    """An integer as a client writes one in a query: decimal digits (not `1.0`, `+1` or `1e3`)."""
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise ValueError("an integer is written in decimal digits")
    return value


# The bounds come before the validator, so they constrain the integer itself: after it (or
# in `Query`) they reach the OpenAPI document as `ge`/`le`, which no client reads as bounds.
LogPosition = Annotated[int, Field(ge=0, le=MAX_POSITION), BeforeValidator(_whole_number)]
"""A log position in a query string: 0 to 2**63-1, in decimal digits."""


class WrittenPositions:
    """Bus middleware that notes the log position of each event a request's messages recorded.

    Give it to the bus (`middleware=[positions]`, sync or async: it only
    passes the result of `call_next` on) and to `answer_written_position`,
    which starts a fresh note for each HTTP request and puts the last
    position noted in the answer's `X-Log-Position` header.
    """

    def __init__(self) -> None:
        self._noted: ContextVar[list[int] | None] = ContextVar("written_positions", default=None)

    def __call__(
        self, envelope: Envelope[BusMessage], call_next: Callable[[Envelope[BusMessage]], Any]
    ) -> Any:
        noted = self._noted.get()
        if noted is not None and isinstance(envelope.message, Event) and envelope.position:
            noted.append(envelope.position)
        return call_next(envelope)

    def last(self) -> int | None:
        """The last position noted in the current request so far, or None."""
        noted = self._noted.get()
        return max(noted) if noted else None

    def _start(self) -> list[int]:
        noted: list[int] = []
        self._noted.set(noted)
        return noted


def answer_written_position(app: FastAPI, positions: WrittenPositions) -> None:
    """Answer each request that recorded events with their last position in `X-Log-Position`.

    Call it where the app is made (middleware cannot be added once it runs).
    The note is kept per request in a context variable, which endpoints on
    the thread pool share, so sync and async endpoints both report.
    """
    app.add_middleware(_PositionHeader, positions=positions)


class _PositionHeader:
    """ASGI middleware: a fresh note per HTTP request, its last position in the answer's header."""

    def __init__(self, app: ASGIApp, positions: WrittenPositions) -> None:
        self.app = app
        self.positions = positions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        noted = self.positions._start()

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start" and noted:
                headers = list(message.get("headers", []))
                headers.append((POSITION_HEADER.lower().encode(), str(max(noted)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)


async def wait_for_projection(
    runner: ProjectionRunner | AsyncProjectionRunner,
    name: str,
    position: int,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> None:
    """Return once `runner`'s projection `name` has reached `position`, without holding a thread.

    An `AsyncProjectionRunner` is awaited as it is. The blocking
    `ProjectionRunner.wait_for` would keep a worker thread for the whole
    wait; here each look at the projection's progress borrows one for a
    moment, and the waiting is done on the event loop. Raises as `wait_for`
    does: `PositionBeyondHead` and `ProjectionStopped` at once,
    `ProjectionTimeout` after `timeout` seconds.
    """
    if isinstance(runner, AsyncProjectionRunner):
        await runner.wait_for(name, position, timeout=timeout)
        return
    deadline = anyio.current_time() + timeout
    pause = 0.005
    while True:
        try:
            await anyio.to_thread.run_sync(partial(runner.wait_for, name, position, timeout=0))
            return
        except ProjectionTimeout as exc:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise ProjectionTimeout(name, position, exc.reached, timeout) from None
        await anyio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.1)


class ReadAfter:
    """A read that must see the log up to `position`: `await wait()` before reading.

    Given by the `read_your_writes` dependency. The wait is the endpoint's
    to start, so the request is validated whole (a 422 comes before any 400
    or 503 of the wait).
    """

    def __init__(
        self,
        runner: ProjectionRunner | AsyncProjectionRunner | None,
        projection: str,
        position: int,
        timeout: float,
    ) -> None:
        self.runner = runner
        self.projection = projection
        self.position = position
        self.timeout = timeout

    async def wait(self) -> None:
        """Return once the read model has processed the log up to `position` (0: at once)."""
        if not self.position:
            return
        if self.runner is None:
            raise RuntimeError(
                "no projection runner for this app: call use_tidings(app, bus, runner=...) "
                "at start-up"
            )
        await wait_for_projection(self.runner, self.projection, self.position, self.timeout)


def read_your_writes(projection: str, timeout: float = 5.0) -> Callable[..., Awaitable[ReadAfter]]:
    """A dependency: the position the client wrote, to wait for `projection` to reach.

    The position comes from the query (`?after=`) or, when the query has
    none, the request's `X-Log-Position` header; with neither (or 0) the
    read does not wait. The runner is the one given to
    `use_tidings(..., runner=...)`::

        async def order(id: str, after: Annotated[ReadAfter, Depends(read_your_writes("orders"))]):
            await after.wait()
    """

    # A coroutine, so FastAPI resolves it on the event loop, not on a worker thread.
    async def written_position(
        request: Request,
        after: Annotated[
            LogPosition,
            Query(
                description=f"Wait until the read model has the events up to this log "
                f"position (a write's {POSITION_HEADER}); 0 or none: do not wait.",
            ),
        ] = 0,
    ) -> ReadAfter:
        position = after or _header_position(request) or 0
        runner = getattr(request.app.state, "tidings_runner", None)
        return ReadAfter(runner, projection, position, timeout)

    return written_position


def _header_position(request: Request) -> int | None:
    text = request.headers.get(POSITION_HEADER)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_POSITION:
        raise RequestValidationError(
            [
                {
                    "loc": ("header", POSITION_HEADER),
                    "msg": f"a log position is a whole number from 0 to {MAX_POSITION}",
                    "type": "int_parsing",
                }
            ]
        )
    return int(text)
