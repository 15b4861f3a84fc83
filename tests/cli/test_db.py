"""`tidings db init` and `db migrate`: the schema made now, its versions reported."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import invoke
from tests.services import postgres_dsn
from tidings.store.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from tidings.store.sqlite_sql import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION


def test_init_creates_the_sqlite_schema_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "events.db"

    result = invoke("db", "init", "--store", f"sqlite:///{path}")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"SQLite {path}: schema version {SQLITE_SCHEMA_VERSION} (created)"
    )
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT max(version) FROM tidings_schema").fetchone()
    assert version == SQLITE_SCHEMA_VERSION
    again = invoke("db", "init", "--store", str(path))
    assert again.stdout.strip() == (
        f"SQLite {path}: schema version {SQLITE_SCHEMA_VERSION} (up to date)"
    )


def test_migrate_reports_from_and_to(tmp_path: Path) -> None:
    path = tmp_path / "events.db"

    first = invoke("db", "migrate", "--store", str(path))
    second = invoke("db", "migrate", "--store", str(path))

    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == (
        f"SQLite {path}: schema migrated from version 0 to {SQLITE_SCHEMA_VERSION}"
    )
    assert (
        second.stdout.strip() == f"SQLite {path}: schema already at version {SQLITE_SCHEMA_VERSION}"
    )


def test_default_store_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    result = invoke("db", "init", env={"TIDINGS_STORE": f"sqlite:///{path}"})
    assert result.exit_code == 0, result.output
    assert path.is_file()


def test_default_store_is_var_tidings_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDINGS_STORE", raising=False)
    result = invoke("db", "init")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("SQLite var/tidings.db: schema version")
    assert (tmp_path / "var" / "tidings.db").is_file()


def test_memory_store_has_no_schema() -> None:
    result = invoke("db", "init", "--store", "memory:")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "tidings db init: error: Invalid value for --store: the memory store has no schema"
    )


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"cli_db_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(postgres_dsn(), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


def test_postgres_schema_created_then_up_to_date(schema: str) -> None:
    url = f"{postgres_dsn()}?schema={schema}"

    first = invoke("db", "migrate", "--store", url)
    second = invoke("db", "init", "--store", url)

    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == (
        f"PostgreSQL schema {schema}: schema migrated from version 0 to {POSTGRES_SCHEMA_VERSION}"
    )
    assert second.stdout.strip() == (
        f"PostgreSQL schema {schema}: schema version {POSTGRES_SCHEMA_VERSION} (up to date)"
    )
    import psycopg

    with psycopg.connect(postgres_dsn()) as connection:
        (found,) = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone() or (0,)
    assert found >= 3
