"""`tidings db`: create or migrate the event store's schema now, rather than on first use."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import typer

from tidings.cli.options import StoreOption, opened_store
from tidings.store.urls import (
    DEFAULT_STORE_URL,
    MemoryURL,
    PostgresURL,
    SQLiteURL,
    parse_store_url,
)

__all__ = ["db_app"]


@runtime_checkable
class _Migratable(Protocol):
    """The SQLite and PostgreSQL stores (the memory store has no schema)."""

    def migrate(self) -> tuple[int, int]: ...


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
    with opened_store(url, must_exist=False) as store:
        assert isinstance(store, _Migratable)
        before, after = store.migrate()
    return target, before, after


def _where(target: SQLiteURL | PostgresURL) -> str:
    if isinstance(target, SQLiteURL):
        return f"SQLite {target.path}"
    return f"PostgreSQL schema {target.schema}"
