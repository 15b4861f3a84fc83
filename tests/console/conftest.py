"""Stores for the console's tests: memory, a SQLite file, a fresh PostgreSQL schema, each
blocking or async, and consoles over them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.console.shop import Seeded, seed
from tests.services import postgres_dsn
from tidings.cli import app
from tidings.console import console_app
from tidings.projections import AsyncProjectionRunner, Projection, ProjectionRunner
from tidings.store import AppendResult, AsyncEventStore, EventStore, NewEvent, Watermark
from tidings.store.urls import open_async_store, open_store


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def store_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store of `kind`, its schema made (a PostgreSQL one dropped after)."""
    if kind == "memory":
        yield "memory:"
        return
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        result = CliRunner().invoke(app, ["db", "init", "--store", url])
        assert result.exit_code == 0, result.output
        yield url
        return
    dsn = postgres_dsn()
    schema = f"console_{uuid.uuid4().hex[:12]}"
    url = f"{dsn}?schema={schema}"
    result = CliRunner().invoke(app, ["db", "init", "--store", url])
    assert result.exit_code == 0, result.output
    try:
        yield url
    finally:
        _drop_schema(dsn, schema)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    for url in store_url("sqlite", tmp_path):
        with open_store(url) as store:
            yield store


class _OnLoop:
    """An async store's writes for `seed`, run on the loop the console is served on."""

    def __init__(self, portal: BlockingPortal, store: AsyncEventStore) -> None:
        self.portal, self.store = portal, store

    def append(self, stream: str, events: Sequence[NewEvent]) -> AppendResult:
        return self.portal.call(self.store.append, stream, events)

    def watermark(self) -> Watermark:
        return self.portal.call(self.store.watermark)


class Subject:
    """A store of one kind, blocking or async, consoles over it and the shop seeded in it.

    Every console of one subject is served on one event loop (its portal),
    the loop an async store's connections belong to.
    """

    def __init__(
        self,
        store: EventStore | AsyncEventStore,
        writer: EventStore | _OnLoop,
        portal: BlockingPortal,
    ) -> None:
        self.store, self.writer, self.portal = store, writer, portal

    def client(
        self,
        projections: Sequence[Projection[object]] = (),
        *,
        page_size: int = 50,
        tail_seconds: float = 30.0,
        tail_interval: float = 0.2,
    ) -> TestClient:
        """A test client of a console over the store."""
        console = console_app(
            self.store,
            projections,
            page_size=page_size,
            tail_seconds=tail_seconds,
            tail_interval=tail_interval,
        )
        client = TestClient(console)
        client.portal = self.portal
        return client

    def seed(self) -> Seeded:
        return seed(self.writer)

    def rebuild(self, projection: Projection[object]) -> None:
        """Run `projection` over the log once, as its runner would, without retry waits."""
        if isinstance(self.writer, _OnLoop):
            runner = AsyncProjectionRunner(self.writer.store, [projection], retry_waits=False)
            self.portal.call(runner.rebuild, projection.name)
        else:
            ProjectionRunner(self.writer, [projection], retry_waits=False).rebuild(projection.name)


KINDS = ["memory", "sqlite", "postgres", "async-memory", "async-sqlite", "async-postgres"]


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """An empty store of each kind, blocking and async, on every backend."""
    kind: str = request.param
    with start_blocking_portal() as portal:
        for url in store_url(kind.removeprefix("async-"), tmp_path):
            if kind.startswith("async-"):
                store = open_async_store(url)
                try:
                    yield Subject(store, _OnLoop(portal, store), portal)
                finally:
                    portal.call(store.aclose)
            else:
                with open_store(url) as blocking:
                    yield Subject(blocking, blocking, portal)
