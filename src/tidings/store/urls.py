"""Opening an event store from a URL, as tools and applications configure it.

Accepted URLs:

- `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or a bare file
  path: the SQLite store in that file;
- `postgresql://...` or `postgres://...`: the PostgreSQL store (the
  `postgres` extra); an optional `schema=name` query parameter chooses the
  schema (default `tidings`), everything else goes to libpq unchanged;
- `memory:`: the in-memory store, gone when the process ends.

Tools default to the SQLite file `var/tidings.db`, relative to the working
directory, unless the `TIDINGS_STORE` environment variable names another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from tidings.store._async.base import AsyncEventStore
from tidings.store._async.memory import AsyncMemoryStore
from tidings.store._async.sqlite import AsyncSQLiteStore
from tidings.store._sync.base import EventStore
from tidings.store._sync.memory import MemoryStore
from tidings.store._sync.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_STORE_URL",
    "STORE_URL_ENV",
    "MemoryURL",
    "PostgresURL",
    "SQLiteURL",
    "StoreURL",
    "default_store_url",
    "open_async_store",
    "open_store",
    "parse_store_url",
]

STORE_URL_ENV = "TIDINGS_STORE"
"""The environment variable that names the store tools and applications open by default."""

DEFAULT_STORE_URL = "sqlite:///var/tidings.db"
"""The store used when `TIDINGS_STORE` is unset: a SQLite file under the working directory."""

DEFAULT_POSTGRES_SCHEMA = "tidings"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """A SQLite store: the database file's path."""

    url: str
    path: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class PostgresURL:
    """A PostgreSQL store: the libpq URL (without `schema`) and the schema."""

    url: str
    conninfo: str
    schema: str

    def __str__(self) -> str:
        """The URL with any password hidden, fit for messages and logs."""
        return _without_password(self.url)


@dataclass(frozen=True, slots=True)
class MemoryURL:
    """The in-memory store."""

    url: str = "memory:"

    def __str__(self) -> str:
        return self.url


StoreURL = SQLiteURL | PostgresURL | MemoryURL
"""A parsed store URL: which backend, and where."""


def default_store_url() -> str:
    """`TIDINGS_STORE` if it is set and not empty, else `DEFAULT_STORE_URL`."""
    return os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL


def parse_store_url(url: str) -> StoreURL:
    """Parse `url` without opening anything; a malformed URL or unknown scheme is a ValueError."""
    if not url.strip():
        raise ValueError("empty store URL")
    match = _SCHEME.match(url)
    if match is None:
        return SQLiteURL(url, url)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        return SQLiteURL(url, _sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        conninfo, schema = _postgres_parts(url)
        return PostgresURL(url, conninfo, schema)
    if scheme == "memory":
        if url.lower() != "memory:":
            raise ValueError(f"malformed store URL {url!r}: the memory store is just 'memory:'")
        return MemoryURL(url)
    raise ValueError(
        f"unknown store URL scheme {scheme!r} in {_without_password(url)!r}: "
        "use sqlite:///path, postgresql://..., memory: or a file path"
    )


def open_store(url: str) -> EventStore:
    """The blocking event store that `url` names; nothing is connected until first use."""
    target = parse_store_url(url)
    if isinstance(target, MemoryURL):
        return MemoryStore()
    if isinstance(target, SQLiteURL):
        _make_parent(target.path)
        return SQLiteStore(target.path)
    from tidings.store.postgres import PostgresStore

    return PostgresStore(target.conninfo, schema=target.schema)


def open_async_store(url: str) -> AsyncEventStore:
    """The async event store that `url` names; nothing is connected until first use."""
    target = parse_store_url(url)
    if isinstance(target, MemoryURL):
        return AsyncMemoryStore()
    if isinstance(target, SQLiteURL):
        _make_parent(target.path)
        return AsyncSQLiteStore(target.path)
    from tidings.store.postgres import AsyncPostgresStore

    return AsyncPostgresStore(target.conninfo, schema=target.schema)


def _sqlite_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(
            f"malformed store URL {url!r}: a SQLite URL has no host; "
            "write sqlite:///relative.db or sqlite:////absolute.db"
        )
    if not url[len("sqlite:") :].startswith("///"):
        raise ValueError(
            f"malformed store URL {url!r}: write sqlite:///relative.db or sqlite:////absolute.db"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"malformed store URL {url!r}: a SQLite URL takes no query or fragment")
    path = unquote(parts.path[1:])
    if not path or path == ":memory:":
        raise ValueError(f"malformed store URL {url!r}: it names no database file")
    return path


def _postgres_parts(url: str) -> tuple[str, str]:
    """The libpq URL without `schema`, and the schema."""
    shown = _without_password(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        raise ValueError(f"malformed store URL {shown!r}: {exc}") from None
    # Parameters other than `schema` are passed on as written: libpq decodes them itself
    # (percent escapes only; a `+` stays a plus), and re-encoding them would change them.
    pieces = [piece for piece in parts.query.split("&") if piece]
    schemas = [
        unquote(value)
        for name, _, value in (piece.partition("=") for piece in pieces)
        if unquote(name) == "schema"
    ]
    if len(schemas) > 1:
        raise ValueError(f"malformed store URL {shown!r}: 'schema' is given more than once")
    schema = schemas[0] if schemas else DEFAULT_POSTGRES_SCHEMA
    if not schema or "\x00" in schema:
        raise ValueError(f"malformed store URL {shown!r}: the schema name is empty or invalid")
    rest = "&".join(piece for piece in pieces if unquote(piece.partition("=")[0]) != "schema")
    conninfo = urlunsplit(parts._replace(query=rest))
    _check_conninfo(shown, conninfo)
    return conninfo, schema


def _check_conninfo(shown: str, conninfo: str) -> None:
    """Let libpq parse the URL when psycopg is installed, so mistakes show before connecting."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ModuleNotFoundError:
        return  # opening the store explains that the postgres extra is missing
    try:
        conninfo_to_dict(conninfo)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ValueError(f"malformed store URL {shown!r}: {reason}") from None


def _make_parent(path: str) -> None:
    """Create the file's directory, so the default `var/tidings.db` works in a fresh checkout."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def _without_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
