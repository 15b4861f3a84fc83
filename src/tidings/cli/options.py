"""Options shared by the commands, and opening the store they name."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import typer

from tidings.cli.group import fail
from tidings.store import EventStore
from tidings.store.urls import (
    STORE_URL_ENV,
    PostgresURL,
    SQLiteURL,
    open_store,
    parse_store_url,
)

__all__ = [
    "AfterOption",
    "CategoryOption",
    "ImportOption",
    "JsonOption",
    "LimitOption",
    "StoreOption",
    "TypeOption",
    "check_categories",
    "check_types",
    "import_modules",
    "opened_store",
    "parse_uuid",
    "require_postgres_extra",
]

CONNECT_TIMEOUT = 3
"""Seconds the commands wait for a PostgreSQL server to answer, unless the URL says otherwise."""


def _check_store_url(url: str) -> str:
    try:
        parse_store_url(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return url


StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        metavar="URL",
        envvar=STORE_URL_ENV,
        show_envvar=True,
        callback=_check_store_url,
        help="Event store: sqlite:///path.db, a file path, postgresql://...?schema=name, memory:.",
    ),
]
AfterOption = Annotated[
    int,
    typer.Option(
        "--after", min=0, metavar="N", help="Start after this position (version with --stream)."
    ),
]
LimitOption = Annotated[
    int, typer.Option("--limit", min=1, metavar="N", help="Show at most this many.")
]
CategoryOption = Annotated[
    list[str] | None,
    typer.Option(
        "--category", "-c", metavar="CATEGORY", help="Only streams of this category (repeatable)."
    ),
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", metavar="TYPE", help="Only events of this type (repeatable)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
ImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        "-i",
        metavar="MODULE",
        help="Import MODULE first, so its event classes decode payloads (repeatable).",
    ),
]


def check_categories(categories: list[str] | None) -> list[str] | None:
    """The categories, each a stream name's part before its first dash; else exit 2."""
    for category in categories or ():
        if not category or "-" in category:
            raise typer.BadParameter(
                f"{category!r} is not a category: a category is the part of a stream name "
                "before its first dash, so it is not empty and has no dash",
                param_hint="--category",
            )
    return categories or None


def check_types(types: list[str] | None) -> list[str] | None:
    if any(not name for name in types or ()):
        raise typer.BadParameter("an event type name is not empty", param_hint="--type")
    return types or None


def parse_uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a UUID", param_hint=what) from None


def import_modules(modules: list[str] | None) -> None:
    """Import the modules named on the command line, from the working directory as well."""
    if not modules:
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise typer.BadParameter(
                f"cannot import {name!r}: {exc}", param_hint="--import"
            ) from None


def require_postgres_extra() -> None:
    """Exit 1 with the install command when the PostgreSQL store cannot be imported."""
    try:
        importlib.import_module("tidings.store.postgres")
    except ModuleNotFoundError as exc:
        fail(str(exc))


@contextmanager
def opened_store(url: str, *, must_exist: bool = True) -> Iterator[EventStore]:
    """The store at `url`, closed at the end of the block.

    With `must_exist`, a SQLite file that is not there is an error rather
    than an empty store made on the spot: reading a mistyped path should not
    leave a new database behind. A PostgreSQL server is connected to once
    first, within `CONNECT_TIMEOUT`: one that is down or does not answer
    ends the command at once with the reason, where the store's pool would
    wait its whole timeout, retrying and logging every attempt.
    """
    target = parse_store_url(url)
    if isinstance(target, PostgresURL):
        require_postgres_extra()
        timed = _with_connect_timeout(target)
        _check_reachable(target, timed.conninfo)
        url = timed.url
    if must_exist and isinstance(target, SQLiteURL) and not Path(target.path).exists():
        fail(f"no event store at {target.path!r} (`tidings db init` creates one)")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _with_connect_timeout(target: PostgresURL) -> PostgresURL:
    """`target` with libpq's `connect_timeout` set, unless its URL or the environment sets it."""
    from psycopg.conninfo import conninfo_to_dict

    if "connect_timeout" in conninfo_to_dict(target.conninfo) or os.environ.get(
        "PGCONNECT_TIMEOUT"
    ):
        return target
    parts = urlsplit(target.url)
    setting = f"connect_timeout={CONNECT_TIMEOUT}"
    query = f"{parts.query}&{setting}" if parts.query else setting
    timed = parse_store_url(urlunsplit(parts._replace(query=query)))
    assert isinstance(timed, PostgresURL)
    return timed


def _check_reachable(target: PostgresURL, conninfo: str) -> None:
    """Connect once to `conninfo`, the server of `target`; exit 1 with libpq's reason if not."""
    import psycopg

    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        fail(f"cannot connect to the PostgreSQL store {target}: {reason}")
