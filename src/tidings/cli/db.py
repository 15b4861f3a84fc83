"""`tidings db`: create or migrate the event store's schema now, rather than on first use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer

from tidings.cli.options import StoreOption, opened_store, require_postgres_extra
from tidings.errors import StoreUnavailable
from tidings.store.urls import (
    DEFAULT_STORE_URL,
    MemoryURL,
    PostgresURL,
    SQLiteURL,
    parse_store_url,
)

__all__ = ["db_app"]

db_app = typer.Typer(name="db", help="Create or migrate the event store's schema.")


@db_app.command()
def init(store: StoreOption = DEFAULT_STORE_URL) -> None:
    """Create or migrate the schema now, and print its version."""
    target, before, after = _migrate(store)
    status = "created" if before == 0 else "up to date" if before == after else "migrated"
    typer.echo(f"{_where(target)}: schema version {after} ({status})")


@db_app.command()
def migrate(store: StoreOption = DEFAULT_STORE_URL) -> None:
    """Migrate the schema now, and report the versions from and to."""
    target, before, after = _migrate(store)
    if before == after:
        typer.echo(f"{_where(target)}: schema already at version {after}")
    else:
        typer.echo(f"{_where(target)}: schema migrated from version {before} to {after}")


def _migrate(url: str) -> tuple[SQLiteURL | PostgresURL, int, int]:
    """Bring the schema up to date; the versions before and after (0: none)."""
    target = parse_store_url(url)
    if isinstance(target, MemoryURL):
        raise typer.BadParameter("the memory store has no schema", param_hint="--store")
    if isinstance(target, PostgresURL):
        require_postgres_extra()
    before = _schema_version(target)
    with opened_store(url, must_exist=False) as store:
        store.list_streams(limit=1)  # the first use of a store creates or migrates its schema
    return target, before, _schema_version(target)


def _schema_version(target: SQLiteURL | PostgresURL) -> int:
    if isinstance(target, SQLiteURL):
        return _sqlite_schema_version(target.path)
    return _postgres_schema_version(target.conninfo, target.schema)


def _sqlite_schema_version(path: str) -> int:
    file = Path(path)
    if not file.exists():
        return 0
    try:
        connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        try:
            known = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tidings_schema'"
            ).fetchone()
            if known is None:
                return 0
            (version,) = connection.execute(
                "SELECT coalesce(max(version), 0) FROM tidings_schema"
            ).fetchone()
            return int(version)
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"SQLite database {path!r}: {exc}") from exc


def _postgres_schema_version(conninfo: str, schema: str) -> int:
    import psycopg

    from tidings.store.postgres_sql import Statements

    statements = Statements.for_schema(schema)
    try:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            (table,) = connection.execute(
                "SELECT to_regclass(%s)", (statements.schema_version_table,)
            ).fetchone() or (None,)
            if table is None:
                return 0
            (version,) = connection.execute(statements.current_schema_version).fetchone() or (0,)
            return int(version or 0)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
        raise StoreUnavailable(f"PostgreSQL schema {schema!r}: {reason}") from exc


def _where(target: SQLiteURL | PostgresURL) -> str:
    if isinstance(target, SQLiteURL):
        return f"SQLite {target.path}"
    return f"PostgreSQL schema {target.schema}"
