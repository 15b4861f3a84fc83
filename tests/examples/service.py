"""The allocation service as a real subprocess on a free port, on SQLite or a fresh schema."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

from tests.services import postgres_dsn
from tidings.store.urls import PostgresURL, SQLiteURL, parse_store_url

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """`python -m examples.allocation serve` on `store_url`, started and stopped at will.

    `options` go to `serve`.
    """

    def __init__(self, store_url: str, workdir: Path, options: Sequence[str] = ()) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.options = list(options)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"service-{self.port}.log"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "examples.allocation",
                    "serve",
                    "--port",
                    str(self.port),
                    *self.options,
                ],
                cwd=self.workdir,
                env={**env, "TIDINGS_STORE": self.store_url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the service did not start in 30 s:\n{self.log()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=15)
            self._process = None

    def kill(self) -> None:
        """End the process with SIGKILL: no shutdown, no flushing, as in a crash."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=15)
            self._process = None

    def count_rows(self, table: str) -> int:
        """Rows in one of the service's tables, read straight from its database."""
        assert table.isidentifier(), table
        target = parse_store_url(self.store_url)
        if isinstance(target, SQLiteURL):
            with closing(sqlite3.connect(target.path)) as connection:
                (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
                return int(count)
        assert isinstance(target, PostgresURL)
        import psycopg
        from psycopg import sql

        with psycopg.connect(target.conninfo) as connection:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(target.schema), sql.Identifier(table)
            )
            row = connection.execute(query).fetchone()
            assert row is not None
            return int(row[0])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def log(self) -> str:
        return self._log.read_text(errors="replace")


@contextmanager
def running_service(backend: str, workdir: Path, options: Sequence[str] = ()) -> Iterator[Service]:
    """A started service on a new database of `backend`; its database is dropped afterwards."""
    with new_database(backend, workdir) as store_url:
        service = Service(store_url, workdir, options)
        service.start()
        try:
            yield service
        finally:
            service.stop()


@contextmanager
def new_database(backend: str, workdir: Path) -> Iterator[str]:
    """The URL of a new store of `backend`: a SQLite file in `workdir`, or a fresh schema."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'allocation.db'}"
        return
    dsn = postgres_dsn()
    schema = f"allocation_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
