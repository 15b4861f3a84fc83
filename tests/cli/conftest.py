"""Stores for the CLI tests: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.services import postgres_dsn
from tidings.cli import app
from tidings.codec import Codec
from tidings.messages import Envelope, Event
from tidings.store import EventStore, NewEvent
from tidings.store.urls import open_store

ROOT = Path(__file__).resolve().parents[2]

# Wide enough that tables and trees never wrap a cell.
WIDE = {"COLUMNS": "250"}


@dataclass
class Store:
    """A store URL the CLI is pointed at, and a way to put events into it."""

    url: str

    def open(self) -> EventStore:
        return open_store(self.url)

    def append(self, stream: str, *envelopes: Envelope[Event]) -> None:
        codec = Codec()
        self.append_raw(stream, *[codec.new_event(envelope) for envelope in envelopes])

    def append_raw(self, stream: str, *events: NewEvent) -> None:
        """Append, then wait until `$all` shows it, so the CLI run next reads it.

        On the shared PostgreSQL server a commit is readable once every older
        writing transaction of the cluster has ended: others' may hold it back.
        """
        store = self.open()
        try:
            last = store.append(stream, events).positions[-1:]
            deadline = time.monotonic() + 60
            while last and store.head_position() < last[0]:
                assert time.monotonic() < deadline, f"position {last[0]} never became readable"
                time.sleep(0.01)
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store, its schema made, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        yield _created(url)
        return
    dsn = postgres_dsn()
    schema = f"cli_{uuid.uuid4().hex[:12]}"
    try:
        yield _created(f"{dsn}?schema={schema}")
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def _created(url: str) -> Store:
    result = CliRunner().invoke(app, ["db", "init", "--store", url])
    assert result.exit_code == 0, result.output
    return Store(url)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run `tidings args...` in this process, on a wide terminal."""
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def run_tidings(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m tidings args...` in a process of its own, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
