"""The allocation service over HTTP: allocations per second and latency at concurrency 16.

The service (`python -m examples.allocation serve`, uvicorn, one worker) runs
in a process of its own, on SQLite (a file in a temporary directory) and on
PostgreSQL (a fresh schema, dropped afterwards). A load generator in this
process keeps 16 requests in flight with `httpx.AsyncClient` and measures,
for each request, the time from sending to the full response.

Workloads, side by side in one run:

- `allocate, 100 SKUs`: `POST /allocate` spread over 100 products, so
  requests rarely touch the same product at once;
- `allocate, 1 SKU`: every request allocates from one product, so concurrent
  requests conflict on its version and the losers run again;
- `read model`: `GET /allocations/{orderid}`, a query of the view table: the
  floor of the service's own HTTP and bus path, without a write.

Each request is a whole unit of work: rows, the events appended in the same
transaction and a durable commit (SQLite `synchronous=FULL`; PostgreSQL's
default `synchronous_commit`), the read model written inline in that same
transaction. Client and server share the machine, so
on 2 cores the client's own CPU time is part of what limits the rate.

Run: `uv run python -m benchmarks.http [--seconds 5] [--concurrency 16]`.
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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_DSN = os.environ.get("TIDINGS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SKUS = 100
RETRIED = "failed on Allocate"  # how the bus logs a command it runs again

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
"""Sends request number n with the client."""


@dataclass(frozen=True)
class Result:
    backend: str
    workload: str
    requests: int
    seconds: float
    latencies: list[float]
    conflicts_retried: int
    conflicts_given_up: int  # answered 409 once every attempt had conflicted

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def service(store_url: str, workdir: Path) -> Iterator[tuple[str, Path]]:
    """The service on `store_url`, started on a free port; yields its URL and its log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = workdir / f"service-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TIDINGS_STORE": store_url}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "examples.allocation", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A store URL on a fresh schema, dropped afterwards; None when PostgreSQL is unreachable."""
    import psycopg
    from psycopg import sql

    schema = f"bench_http_{uuid.uuid4().hex[:12]}"
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL skipped: {POSTGRES_DSN}: {str(exc).strip().splitlines()[0]}")
        yield None
        return
    try:
        yield f"{POSTGRES_DSN}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


async def load(
    url: str, send: Send, concurrency: int, seconds: float
) -> tuple[int, float, list[float], int]:
    """Keep `concurrency` requests in flight for `seconds`: count, time, latencies, 409s."""
    numbers = itertools.count()
    latencies: list[float] = []
    conflicts: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker(stop: float) -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                n = next(numbers)
                response = await send(client, n)
                latencies.append(time.perf_counter() - started)
                if response.status_code == 409:
                    conflicts.append(n)
                elif response.status_code >= 300:
                    raise SystemExit(f"{response.status_code}: {response.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(latencies), elapsed, latencies, len(conflicts)


def run_backend(
    backend: str, store_url: str, workdir: Path, concurrency: int, seconds: float
) -> list[Result]:
    run = uuid.uuid4().hex[:6]
    results = []
    with service(store_url, workdir) as (url, log_path):
        with httpx.Client(base_url=url, timeout=30) as client:
            for n in range(SKUS):
                client.post(
                    "/add_batch",
                    json={"ref": f"b{n}-{run}", "sku": f"SKU{n}-{run}", "qty": 10**9, "eta": None},
                ).raise_for_status()
            client.post(
                "/allocate", json={"orderid": f"seen-{run}", "sku": f"SKU0-{run}", "qty": 1}
            ).raise_for_status()

        def spread(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
            body = {"orderid": f"s{n}-{run}", "sku": f"SKU{n % SKUS}-{run}", "qty": 1}
            return client.post("/allocate", json=body)

        def hot(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
            return client.post(
                "/allocate", json={"orderid": f"h{n}-{run}", "sku": f"SKU0-{run}", "qty": 1}
            )

        def read(client: httpx.AsyncClient, n: int) -> Awaitable[httpx.Response]:
            return client.get(f"/allocations/seen-{run}")

        for workload, send in [
            ("allocate, 100 SKUs", spread),
            ("allocate, 1 SKU", hot),
            ("read model", read),
        ]:
            asyncio.run(load(url, send, concurrency, min(1.0, seconds)))  # warm up
            retries_before = log_path.read_text(errors="replace").count(RETRIED)
            count, elapsed, latencies, gave_up = asyncio.run(load(url, send, concurrency, seconds))
            retries = log_path.read_text(errors="replace").count(RETRIED) - retries_before
            results.append(Result(backend, workload, count, elapsed, latencies, retries, gave_up))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results += run_backend(
            "SQLite", f"sqlite:///{workdir / 'bench.db'}", workdir, args.concurrency, args.seconds
        )
        with postgres_schema() as postgres_url:
            if postgres_url is not None:
                results += run_backend(
                    "PostgreSQL", postgres_url, workdir, args.concurrency, args.seconds
                )

    print(
        f"\n{date.today()}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores; concurrency {args.concurrency}, "
        f"{args.seconds:g} s per case\n"
    )
    floors = {r.backend: r.rate for r in results if r.workload == "read model"}
    sqlite_rates = {r.workload: r.rate for r in results if r.backend == "SQLite"}
    columns = "backend | workload | req/s | vs read model | vs SQLite | p50 ms | p99 ms | retries"
    print(f"| {columns} | 409s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.backend} | {r.workload} | {r.rate:,.0f} | {r.rate / floors[r.backend]:.2f}x "
            f"| {r.rate / sqlite_rates[r.workload]:.2f}x "
            f"| {1000 * r.percentile(0.50):.1f} | {1000 * r.percentile(0.99):.1f} "
            f"| {r.conflicts_retried} | {r.conflicts_given_up} |"
        )
    print(
        "\nretries: allocations run again after a conflict on the product's version "
        f"(from the service's log); {statistics.mean(r.requests for r in results):,.0f} "
        "requests per case on average"
    )


if __name__ == "__main__":
    main()
