"""The web console's pages over a log of 100,000 events: blocking and async stores side by side.

One log per backend (a SQLite file; a fresh PostgreSQL schema, dropped
afterwards) holds 100,000 small events of one request. A console over the
blocking store (each read in a worker thread) and one over the async store
(each read awaited on the server's loop) are served by uvicorn on one event
loop each, in this process; a client sends one request at a time and times
it to the full response. Runs of the contenders are interleaved, repeat by
repeat, so the machine's noise falls on each alike.

Pages: `$all`'s first page, a page deep in the log (`?after=`), a page
filtered by type, an event whose request holds all 100,000 (its causation
read stops at 1,000, shown as the tree), and the streams.

Run: `uv run python -m benchmarks.console [--requests 20] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp

from tidings.console import console_app
from tidings.messages import utc_now
from tidings.store import AsyncEventStore, EventStore, NewEvent
from tidings.store.urls import open_async_store, open_store

POSTGRES_DSN = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
EVENTS = 100_000


def _fill(store: EventStore) -> None:
    correlation, now = uuid.uuid4(), utc_now()
    for start in range(0, EVENTS, 20_000):
        store.append(
            f"Tick-{start}",
            [
                NewEvent(uuid.uuid4(), "bench.Tick", 1, b'{"n":%d}' % n, correlation, None, now)
                for n in range(start, start + 20_000)
            ],
        )


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _served(portal: BlockingPortal, app: ASGIApp) -> Iterator[str]:
    """`app` served by uvicorn on the portal's loop, until the block ends."""
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    done = portal.start_task_soon(server.serve)
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        done.result(10)


@contextmanager
def _url(backend: str, scratch: Path) -> Iterator[str]:
    from typer.testing import CliRunner

    from tidings.cli import app

    if backend == "sqlite":
        url = f"sqlite:///{scratch / 'events.db'}"
    else:
        url = f"{POSTGRES_DSN}?schema=bench_console_{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(app, ["db", "init", "--store", url])
    assert result.exit_code == 0, result.output
    try:
        yield url
    finally:
        if backend == "postgres":
            import psycopg
            from psycopg import sql

            schema = url.rpartition("schema=")[2]
            with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
                drop = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
                connection.execute(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per page and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"{platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    bases: dict[str, str] = {}
    middles: dict[str, int] = {}  # the 50,000th event's position, of each contender's log
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for backend in args.backends.split(","):
            url = stack.enter_context(_url(backend, scratch))
            blocking: EventStore = stack.enter_context(open_store(url))
            _fill(blocking)
            middle = blocking.read_all(limit=EVENTS // 2)[-1].position  # positions may gap
            middles[f"{backend}, blocking"] = middles[f"{backend}, async"] = middle
            portal = stack.enter_context(start_blocking_portal())
            bases[f"{backend}, blocking"] = stack.enter_context(
                _served(portal, console_app(blocking))
            )
            portal = stack.enter_context(start_blocking_portal())
            asynchronous: AsyncEventStore = open_async_store(url)
            stack.callback(portal.call, asynchronous.aclose)
            bases[f"{backend}, async"] = stack.enter_context(
                _served(portal, console_app(asynchronous))
            )
        pages = {
            "$all, first page": "/",
            "$all, deep page": "/?after={middle}",
            "$all, by type": "/?type=bench.Tick",
            "an event (1,000 in its tree)": "/events/{middle}",
            "streams": "/streams",
        }
        times: dict[tuple[str, str], list[float]] = {}
        with httpx.Client(timeout=30) as client:
            for contender, base in bases.items():  # warm each console and its connections
                for path in pages.values():
                    client.get(base + path.format(middle=middles[contender])).raise_for_status()
            for _ in range(args.repeats):
                for page, path in pages.items():
                    for contender, base in bases.items():
                        address = base + path.format(middle=middles[contender])
                        for _ in range(args.requests):
                            started = time.perf_counter()
                            client.get(address).raise_for_status()
                            elapsed = time.perf_counter() - started
                            times.setdefault((page, contender), []).append(elapsed)
    print(f"load after {os.getloadavg()[0]:.2f}; median and p95 ms of one request")
    contenders = list(bases)
    print(f"| page | {' | '.join(contenders)} |")
    print(f"| --- |{' --- |' * len(contenders)}")
    for page in pages:
        cells = []
        for contender in contenders:
            found = sorted(times[(page, contender)])
            p95 = found[int(len(found) * 0.95) - 1]
            cells.append(f"{statistics.median(found) * 1000:.1f} / {p95 * 1000:.1f}")
        print(f"| {page} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
