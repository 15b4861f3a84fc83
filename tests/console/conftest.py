"""Stores for the console's tests: memory, a SQLite file, a fresh PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.services import postgres_dsn
from tidings.cli import app
from tidings.store import EventStore
from tidings.store.urls import open_store


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


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """An empty store of each kind."""
    for url in store_url(request.param, tmp_path):
        with open_store(url) as store:
            yield store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    for url in store_url("sqlite", tmp_path):
        with open_store(url) as store:
            yield store
