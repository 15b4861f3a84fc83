"""Serving a console on a free local port in a thread, for the browser tests and screenshots."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import uvicorn
from anyio.from_thread import start_blocking_portal
from starlette.types import ASGIApp

from tidings.messages import utc_now
from tidings.store import EventStore, NewEvent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(app: ASGIApp, close: Callable[[], Awaitable[None]] | None = None) -> Iterator[str]:
    """The base URL of `app`, served by uvicorn on an event loop of its own until the block ends.

    `close` (an async store's `aclose`) is awaited on that loop once the
    server has stopped: an async store's connections belong to it.
    """
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    with start_blocking_portal() as portal:
        served = portal.start_task_soon(server.serve)
        deadline = time.monotonic() + 15
        while not server.started:
            assert not served.done() and time.monotonic() < deadline, "the console did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            served.result(10)
            if close is not None:
                portal.call(close)


def bulk_append(store: EventStore, count: int, batch: int = 20000) -> None:
    """Append `count` small events of one type, `batch` to an append: fast on SQLite."""
    correlation, now = uuid.uuid4(), utc_now()
    for start in range(0, count, batch):
        events = [
            NewEvent(
                uuid.uuid4(),
                "console.Tick",
                1,
                b'{"n":%d}' % n,
                correlation,
                None,
                now,
            )
            for n in range(start, min(count, start + batch))
        ]
        store.append(f"Tick-{start // batch}", events)
