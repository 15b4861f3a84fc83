"""The allocation service over HTTP, beside the Flask app of Architecture Patterns with Python.

Contenders, each a server process of its own, all started before the first
case and measured in turn:

- ours, `python -m examples.allocation serve` (FastAPI on uvicorn, one
  worker), on PostgreSQL (a fresh schema) and on SQLite (a file);
- the book's app (cosmicpython/code, branch master, `flask_app.app`) under
  gunicorn with one sync worker (one request at a time: its bus and unit of
  work are shared, so threads would race), and with four sync workers, on
  the same PostgreSQL in a schema of its own (see `benchmarks.book_app`).
  Its code is not in this repository: `--book-app PATH` or
  `TIDINGS_BENCH_BOOK_APP` names a checkout; without one the book is skipped.

A load generator in this process keeps 16 requests in flight with
`httpx.AsyncClient` and times each request from sending to the full
response. Workloads:

- `allocate, 100 SKUs`: `POST /allocate` spread over 100 products (one
  batch each, never out of stock);
- `allocate, 1 SKU`: every request allocates from one product;
- `read model`: `GET /allocations/{orderid}` of an allocated order.

Every case runs on products of its own, seeded through `/add_batch` just
before it, so no case inherits the order lines of another. Rounds interleave
the contenders case by case (each workload, every contender in turn; each
round starts with the next contender) and the figures are the medians over
rounds, so the machine's load falls on all alike. Rates count the 2xx
answers only; responses 409 and 5xx are counted apart (the client does not
retry them).

Both apps commit each allocation durably with its read-model row (ours in
one transaction with its events; the book's in a second transaction of its
event handler). Client and servers share the machine's cores.

Run: `uv run python -m benchmarks.http [--seconds 5] [--rounds 3] [--book-app PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

from benchmarks.book_app import BOOK_APP_ENV, BOOK_SCHEMA_ENV

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_DSN = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SKUS = 100
RETRIED = "failed on Allocate"  # how our bus logs a command it runs again
WORKLOADS = ("allocate, 100 SKUs", "allocate, 1 SKU", "read model")

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
"""Sends request number n with the client."""


@dataclass(frozen=True)
class Server:
    """A running contender: its name, URL, and its log when it reports retries there."""

    name: str
    url: str
    log: Path | None


@dataclass(frozen=True)
class Run:
    requests: int  # answered 2xx: a 409 or a 5xx allocated nothing
    seconds: float
    latencies: list[float]
    conflicts: int  # 409s
    failures: int  # 5xx
    retries: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass
class Case:
    server: str
    workload: str
    runs: list[Run] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    def percentile(self, fraction: float) -> float:
        def at(run: Run) -> float:
            ordered = sorted(run.latencies)
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

        return statistics.median(at(run) for run in self.runs)

    def total(self, attribute: str) -> int:
        return sum(getattr(run, attribute) for run in self.runs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(
    name: str, command: list[str], env: dict[str, str], ready: str, workdir: Path, port: int
) -> Iterator[Server]:
    """`command` started with its output in a log; yields once GET `ready` answers below 500."""
    log_path = workdir / f"{name.replace(' ', '-').replace(',', '')}.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts slowly
        while True:
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}{ready}", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield Server(name, url, log_path)
    finally:
        child.terminate()
        child.wait(timeout=15)


def ours(name: str, store_url: str, workdir: Path) -> AbstractContextManager[Server]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TIDINGS_STORE": store_url}
    # Like gunicorn's default, which the book's app runs with: no access log.
    command = [
        sys.executable,
        "-m",
        "examples.allocation",
        "serve",
        "--port",
        str(port),
        "--no-access-log",
    ]
    return process(name, command, env, "/openapi.json", workdir, port)


@contextmanager
def book(name: str, checkout: Path, workers: int, workdir: Path) -> Iterator[Server]:
    """The book's app under gunicorn (`workers` sync workers, one thread each), its own schema."""
    with postgres_schema("bench_book") as schema:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            BOOK_APP_ENV: str(checkout),
            BOOK_SCHEMA_ENV: schema,
        }
        subprocess.run(
            [sys.executable, "-m", "benchmarks.book_app", "create"], cwd=ROOT, env=env, check=True
        )
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--threads",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "benchmarks.book_app:app",
        ]
        with process(name, command, env, "/allocations/none", workdir, port) as server:
            yield Server(server.name, server.url, None)


def postgres_reachable() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL skipped: {POSTGRES_DSN}: {str(exc).strip().splitlines()[0]}")
        return False
    return True


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A fresh schema's name, created now and dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


async def load(server: Server, send: Send, concurrency: int, seconds: float) -> Run:
    """Keep `concurrency` requests in flight for `seconds`."""
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: list[int] = []
    retries_before = count_retries(server)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def worker(stop: float) -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = await send(client, next(numbers))
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)
                if (
                    response.status_code >= 300
                    and response.status_code not in (409,)
                    and (response.status_code < 500)
                ):
                    raise SystemExit(f"{server.name}: {response.status_code}: {response.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Run(
        sum(200 <= status < 300 for status in statuses),
        elapsed,
        latencies,
        statuses.count(409),
        sum(status >= 500 for status in statuses),
        count_retries(server) - retries_before,
    )


def count_retries(server: Server) -> int:
    return server.log.read_text(errors="replace").count(RETRIED) if server.log else 0


def seed(server: Server, run: str) -> None:
    """100 products of one batch each (plenty of stock), and one allocated order to read."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(SKUS):
            client.post(
                "/add_batch",
                json={"ref": f"b{n}-{run}", "sku": f"SKU{n}-{run}", "qty": 10**9, "eta": None},
            ).raise_for_status()
        client.post(
            "/allocate", json={"orderid": f"seen-{run}", "sku": f"SKU0-{run}", "qty": 1}
        ).raise_for_status()


def sender(workload: str, run: str) -> Send:
    def spread(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
        body = {"orderid": f"s{n}-{run}", "sku": f"SKU{n % SKUS}-{run}", "qty": 1}
        return client.post("/allocate", json=body)

    def hot(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
        body = {"orderid": f"h{n}-{run}", "sku": f"SKU0-{run}", "qty": 1}
        return client.post("/allocate", json=body)

    def read(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
        return client.get(f"/allocations/seen-{run}")

    return {WORKLOADS[0]: spread, WORKLOADS[1]: hot, WORKLOADS[2]: read}[workload]


def measure(
    servers: list[Server], rounds: int, concurrency: int, seconds: float
) -> dict[tuple[str, str], Case]:
    cases = {(s.name, w): Case(s.name, w) for s in servers for w in WORKLOADS}
    for round_ in range(rounds):
        # Contenders take turns case by case, each round starting with the next one, so a
        # change in the machine's load during a round falls on all of them alike.
        turn = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
        for workload in WORKLOADS:
            for server in turn:
                run = uuid.uuid4().hex[:6]
                seed(server, run)
                send = sender(workload, run)
                if round_ == 0:
                    asyncio.run(load(server, send, concurrency, min(1.0, seconds)))  # warm up
                    run = uuid.uuid4().hex[:6]
                    seed(server, run)
                    send = sender(workload, run)
                result = asyncio.run(load(server, send, concurrency, seconds))
                cases[server.name, workload].runs.append(result)
                print(
                    f"  round {round_ + 1}: {server.name}, {workload}: {result.rate:,.0f} req/s",
                    file=sys.stderr,
                )
    return cases


def book_checkout(given: str | None) -> Path | None:
    path = given or os.environ.get(BOOK_APP_ENV)
    if not path:
        print(f"The book's app skipped: no --book-app PATH and no {BOOK_APP_ENV}")
        return None
    checkout = Path(path).resolve()
    if not (checkout / "src" / "allocation" / "entrypoints" / "flask_app.py").is_file():
        print(
            f"The book's app skipped: {checkout} holds no src/allocation/entrypoints/flask_app.py"
        )
        return None
    return checkout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of every case")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--book-app",
        metavar="PATH",
        help=f"a checkout of cosmicpython/code (default: ${BOOK_APP_ENV}; else no book)",
    )
    args = parser.parse_args()

    checkout = book_checkout(args.book_app)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        servers: list[Server] = []
        if postgres_reachable():
            schema = stack.enter_context(postgres_schema("bench_http"))
            servers.append(
                stack.enter_context(
                    ours("ours, PostgreSQL", f"{POSTGRES_DSN}?schema={schema}", workdir)
                )
            )
            if checkout is not None:
                for name, workers in [("book, 1 worker", 1), ("book, 4 workers", 4)]:
                    servers.append(stack.enter_context(book(name, checkout, workers, workdir)))
        servers.append(
            stack.enter_context(ours("ours, SQLite", f"sqlite:///{workdir / 'bench.db'}", workdir))
        )
        load_before = os.getloadavg()
        cases = measure(servers, args.rounds, args.concurrency, args.seconds)
        load_after = os.getloadavg()
    report(servers, cases, args, load_before, load_after)


def report(
    servers: list[Server],
    cases: dict[tuple[str, str], Case],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(
        f"\n{date.today()}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores, load average (1 min) "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; concurrency "
        f"{args.concurrency}, {args.seconds:g} s per case, median of {args.rounds} rounds\n"
    )
    print("| server | workload | 2xx/s | p50 ms | p99 ms | 409s | 5xx | retries |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases.values():
        print(
            f"| {case.server} | {case.workload} | {case.rate:,.0f} "
            f"| {1000 * case.percentile(0.50):.1f} | {1000 * case.percentile(0.99):.1f} "
            f"| {case.total('conflicts')} | {case.total('failures')} | {case.total('retries')} |"
        )
    mine = [s.name for s in servers if s.name.startswith("ours")]
    books = [s.name for s in servers if s.name.startswith("book")]
    if books:
        pairs = [(m, b) for m in mine for b in books]
        print("\nours ÷ book, 2xx/s:\n")
        print("| workload | " + " | ".join(f"{m} ÷ {b}" for m, b in pairs) + " |")
        print("| --- |" + " ---: |" * len(pairs))
        for workload in WORKLOADS:
            ratios = (cases[m, workload].rate / cases[b, workload].rate for m, b in pairs)
            print(f"| {workload} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    print(
        "\n1 SKU ÷ 100 SKUs, 2xx/s: "
        + ", ".join(
            f"{s.name} {cases[s.name, WORKLOADS[1]].rate / cases[s.name, WORKLOADS[0]].rate:.2f}x"
            for s in servers
        )
    )
    print(
        "\n409s and 5xx: totals over the rounds; retries: allocations our service ran again "
        "after a conflict (from its log)"
    )


if __name__ == "__main__":
    main()
