"""Opening stores from URLs: SQLite files, PostgreSQL schemas, memory, and what is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.services import postgres_dsn
from tests.store.readable import readable, wait_readable
from tidings.messages import new_id
from tidings.store import (
    AsyncMemoryStore,
    AsyncSQLiteStore,
    EventStore,
    MemoryStore,
    NewEvent,
    SQLiteStore,
)
from tidings.store.urls import (
    DEFAULT_STORE_URL,
    MemoryURL,
    PostgresURL,
    SQLiteURL,
    default_store_url,
    open_async_store,
    open_store,
    parse_store_url,
)


def _event() -> NewEvent:
    event_id = new_id()
    return NewEvent(event_id, "Noted", 1, b"{}", event_id, None, datetime.now(UTC))


def _round_trip(store: EventStore) -> None:
    try:
        store.append("Note-1", [_event()])
        wait_readable(store)
        assert [record.stream for record in store.read_all()] == ["Note-1"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/events.db", "var/events.db"),
        ("sqlite:////srv/tidings/events.db", "/srv/tidings/events.db"),
        ("sqlite:///my%20events.db", "my events.db"),
        ("events.db", "events.db"),
        ("./data/events.db", "./data/events.db"),
        ("/srv/events.db", "/srv/events.db"),
    ],
)
def test_sqlite_urls_and_bare_paths_name_a_file(url: str, path: str) -> None:
    assert parse_store_url(url) == SQLiteURL(url, path)


def test_postgres_url_gives_schema_to_the_store_and_the_rest_to_libpq() -> None:
    url = "postgresql://app@db.internal:6543/events?schema=orders&sslmode=require"
    assert parse_store_url(url) == PostgresURL(
        url, "postgresql://app@db.internal:6543/events?sslmode=require", "orders"
    )


def test_postgres_scheme_alias_and_default_schema() -> None:
    url = "postgres://app@localhost/events"
    assert parse_store_url(url) == PostgresURL(url, url, "tidings")


def test_memory_url() -> None:
    assert parse_store_url("memory:") == MemoryURL()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty store URL"),
        ("mysql://localhost/db", "unknown store URL scheme 'mysql'"),
        ("sqlite://host/events.db", "has no host"),
        ("sqlite:/events.db", "malformed store URL 'sqlite:/events.db'"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///:memory:", "names no database file"),
        ("sqlite:///events.db?mode=ro", "takes no query"),
        ("memory://here", "just 'memory:'"),
        ("postgresql://localhost:port/db", "malformed store URL"),
        ("postgresql://localhost/db?schema=", "schema name is empty"),
        ("postgresql://localhost/db?schema=a&schema=b", "more than once"),
        ("postgresql://localhost/db?no_such_parameter=1", "no_such_parameter"),
    ],
)
def test_malformed_urls_are_value_errors_naming_them(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_store_url(url)
    if url:
        assert repr(url) in str(caught.value)


def test_a_password_never_shows_in_errors_or_text() -> None:
    with pytest.raises(ValueError, match="malformed") as caught:
        parse_store_url("postgresql://app:s3cret@localhost:port/db")
    assert "s3cret" not in str(caught.value)
    url = parse_store_url("postgresql://app:s3cret@localhost/db")
    assert str(url) == "postgresql://app:***@localhost/db"
    with pytest.raises(ValueError, match="unknown store URL scheme") as unknown:
        parse_store_url("mysql://app:s3cret@localhost/db")
    assert "s3cret" not in str(unknown.value)


def test_default_store_is_var_tidings_db_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TIDINGS_STORE", raising=False)
    assert default_store_url() == DEFAULT_STORE_URL == "sqlite:///var/tidings.db"
    monkeypatch.setenv("TIDINGS_STORE", "")
    assert default_store_url() == DEFAULT_STORE_URL
    monkeypatch.setenv("TIDINGS_STORE", "memory:")
    assert default_store_url() == "memory:"


def test_relative_sqlite_url_opens_a_file_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(DEFAULT_STORE_URL)
    assert isinstance(store, SQLiteStore)
    _round_trip(store)
    assert (tmp_path / "var" / "tidings.db").is_file()


def test_absolute_sqlite_url_and_bare_path_open_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "events.db"
    _round_trip(open_store(f"sqlite:///{path}"))
    store = open_store(str(path))
    try:
        assert [record.stream for record in store.read_all()] == ["Note-1"]
    finally:
        store.close()


def test_memory_url_opens_an_empty_memory_store() -> None:
    store = open_store("memory:")
    assert isinstance(store, MemoryStore)
    _round_trip(store)


def test_async_stores_open_from_the_same_urls(tmp_path: Path) -> None:
    path = tmp_path / "events.db"

    async def main() -> list[str]:
        sqlite = open_async_store(f"sqlite:///{path}")
        memory = open_async_store("memory:")
        assert isinstance(sqlite, AsyncSQLiteStore)
        assert isinstance(memory, AsyncMemoryStore)
        try:
            await sqlite.append("Note-1", [_event()])
            await memory.append("Note-2", [_event()])
            return [r.stream for r in await sqlite.read_all() + await memory.read_all()]
        finally:
            await sqlite.aclose()
            await memory.aclose()

    assert asyncio.run(main()) == ["Note-1", "Note-2"]


def test_opening_an_unknown_scheme_raises_before_anything_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown store URL scheme 'redis'"):
        open_store("redis://localhost")
    with pytest.raises(ValueError, match="unknown store URL scheme 'redis'"):
        open_async_store("redis://localhost")


@pytest.fixture
def postgres_url() -> Iterator[tuple[str, str]]:
    dsn = postgres_dsn()
    schema = f"urls_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}&application_name=tidings-test", schema
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def _tables_in(schema: str) -> set[str]:
    import psycopg

    with psycopg.connect(postgres_dsn()) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def test_postgres_url_opens_the_store_in_its_schema(postgres_url: tuple[str, str]) -> None:
    from tidings.store.postgres import PostgresStore

    url, schema = postgres_url
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store.schema == schema
    _round_trip(store)
    assert "events" in _tables_in(schema)


def test_postgres_url_opens_the_async_store_in_its_schema(postgres_url: tuple[str, str]) -> None:
    from tidings.store.postgres import AsyncPostgresStore

    url, schema = postgres_url

    async def main() -> list[str]:
        store = open_async_store(url)
        assert isinstance(store, AsyncPostgresStore)
        try:
            await store.append("Note-1", [_event()])
            await readable(store)
            return [record.stream for record in await store.read_all()]
        finally:
            await store.aclose()

    assert asyncio.run(main()) == ["Note-1"]
    assert "events" in _tables_in(schema)


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        (
            "postgresql://h/db?options=-c%20statement_timeout%3D5000&schema=s",
            "postgresql://h/db?options=-c%20statement_timeout%3D5000",
        ),
        (
            "postgresql://h/db?application_name=my%20app",
            "postgresql://h/db?application_name=my%20app",
        ),
        (
            "postgresql://h/db?schema=s&application_name=a+b",
            "postgresql://h/db?application_name=a+b",
        ),
        ("postgresql://h/db?schema=s", "postgresql://h/db"),
    ],
)
def test_postgres_url_parameters_reach_libpq_as_written(url: str, conninfo: str) -> None:
    parsed = parse_store_url(url)
    assert isinstance(parsed, PostgresURL)
    assert parsed.conninfo == conninfo


def test_a_schema_parameter_is_percent_decoded_as_libpq_decodes() -> None:
    parsed = parse_store_url("postgresql://h/db?schema=my%20events")
    assert isinstance(parsed, PostgresURL)
    assert parsed.schema == "my events"


def test_postgres_url_parameters_take_effect_on_the_server() -> None:
    from tidings.store.postgres import PostgresStore

    dsn = postgres_dsn()
    schema = f"urls_{uuid.uuid4().hex[:12]}"
    name = f"my app {uuid.uuid4().hex[:8]}"
    url = (
        f"{dsn}?options=-c%20statement_timeout%3D5000&schema={schema}"
        f"&application_name={name.replace(' ', '%20')}"
    )
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    try:
        with store.transaction() as tx:
            timeout = tx.connection.execute("SHOW statement_timeout").fetchone()
            named = tx.connection.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert timeout == ("5s",)
        assert named == (name,)
    finally:
        store.close()
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def test_a_plus_in_the_schema_parameter_stays_a_plus() -> None:
    parsed = parse_store_url("postgresql://h/db?schema=a+b")
    assert isinstance(parsed, PostgresURL)
    assert parsed.schema == "a+b"
