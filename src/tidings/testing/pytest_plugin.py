"""The tidings pytest plugin: event stores on every backend, and bus scenarios, as fixtures.

Installed with tidings, pytest loads it by itself (the `pytest11` entry
point). Every name it adds starts with `tidings_`, so it never shadows a
fixture of the project under test.

- `tidings_store` is an empty blocking `EventStore`, and `tidings_async_store`
  an empty `AsyncEventStore` (for async tests, run by anyio: mark them
  `@pytest.mark.anyio`). A test using either runs once per backend: `memory`,
  `sqlite` (a file in the test's `tmp_path`) and `postgres`, in a schema of
  its own dropped afterwards, when a server is named by `--tidings-postgres
  DSN` or `TIDINGS_TEST_POSTGRES`; without one the PostgreSQL run is skipped,
  with that reason. `@pytest.mark.tidings_backends("sqlite", "postgres")`
  picks the backends of one test; `tidings_backend` is the one running.
- `tidings_scenario` is a `BusScenario` over the bus the project's
  `tidings_bootstrap` fixture builds around the scenario's `MemoryStore`
  (`tidings_async_scenario` and `tidings_async_bootstrap` for an
  `AsyncMessageBus`); define the bootstrap fixture in `conftest.py`::

      @pytest.fixture
      def tidings_bootstrap() -> Callable[[MemoryStore], MessageBus]:
          return lambda store: bootstrap(store=store, send_mail=Recorder())
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tidings._async.bus import AsyncMessageBus
from tidings._sync.bus import MessageBus
from tidings.store import (
    AsyncEventStore,
    AsyncMemoryStore,
    AsyncSQLiteStore,
    EventStore,
    MemoryStore,
    SQLiteStore,
)
from tidings.testing._async.bus import AsyncBusScenario
from tidings.testing._sync.bus import BusScenario

__all__ = [
    "BACKENDS",
    "POSTGRES_ENV",
    "tidings_async_bootstrap",
    "tidings_async_scenario",
    "tidings_async_store",
    "tidings_backend",
    "tidings_bootstrap",
    "tidings_scenario",
    "tidings_store",
]

BACKENDS = ("memory", "sqlite", "postgres")
"""The backends a store fixture runs on, in this order."""

POSTGRES_ENV = "TIDINGS_TEST_POSTGRES"
"""The variable naming the PostgreSQL test database, unless `--tidings-postgres` does."""

_MARKER = "tidings_backends"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tidings")
    group.addoption(
        "--tidings-postgres",
        metavar="DSN",
        default=None,
        help=f"PostgreSQL database for the tidings store fixtures (default: ${POSTGRES_ENV}); "
        "each test gets a schema of its own, dropped afterwards.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*names): run the tidings store fixtures on these backends only "
        f"(of {', '.join(BACKENDS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per backend for a test using a store fixture, of those its marker names."""
    if "tidings_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(_MARKER)
    backends = tuple(marker.args) if marker is not None and marker.args else BACKENDS
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        pytest.fail(
            f"{metafunc.definition.nodeid}: unknown tidings backend {unknown[0]!r}; "
            f"the backends are {', '.join(BACKENDS)}",
            pytrace=False,
        )
    metafunc.parametrize("tidings_backend", backends, indirect=True)


@pytest.fixture
def tidings_backend(request: pytest.FixtureRequest) -> str:
    """The backend the store fixtures of this run are on: memory, sqlite or postgres."""
    backend: str = request.param
    return backend


@pytest.fixture
def tidings_store(
    tidings_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[EventStore]:
    """An empty blocking event store on `tidings_backend`, closed (its schema dropped) after."""
    if tidings_backend == "memory":
        yield MemoryStore()
        return
    if tidings_backend == "sqlite":
        store: EventStore = SQLiteStore(tmp_path / "events.db")
        try:
            yield store
        finally:
            store.close()
        return
    from tidings.store.postgres import PostgresStore

    dsn, schema = _postgres(request.config), _schema()
    store = PostgresStore(dsn, schema=schema)
    try:
        yield store
    finally:
        store.close()
        _drop(dsn, schema)


@pytest.fixture
async def tidings_async_store(
    anyio_backend: object, tidings_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncEventStore]:
    """An empty async event store on `tidings_backend`, for a test marked `anyio`."""
    if tidings_backend == "memory":
        yield AsyncMemoryStore()
        return
    if tidings_backend == "sqlite":
        store: AsyncEventStore = AsyncSQLiteStore(tmp_path / "events.db")
        try:
            yield store
        finally:
            await store.aclose()
        return
    from tidings.store.postgres import AsyncPostgresStore

    dsn, schema = _postgres(request.config), _schema()
    store = AsyncPostgresStore(dsn, schema=schema)
    try:
        yield store
    finally:
        await store.aclose()
        _drop(dsn, schema)


@pytest.fixture
def tidings_bootstrap() -> Callable[[MemoryStore], MessageBus]:
    """The application's composition root over a store; the project defines this fixture."""
    pytest.fail(
        "tidings_scenario builds the bus with a tidings_bootstrap fixture: define one in "
        "conftest.py returning a function from the MemoryStore to the MessageBus",
        pytrace=False,
    )


@pytest.fixture
def tidings_scenario(tidings_bootstrap: Callable[[MemoryStore], MessageBus]) -> BusScenario:
    """A `BusScenario` over the bus `tidings_bootstrap` builds around its `MemoryStore`."""
    return BusScenario.using(tidings_bootstrap)


@pytest.fixture
def tidings_async_bootstrap() -> Callable[[AsyncMemoryStore], AsyncMessageBus]:
    """The async application's composition root over a store; the project defines this fixture."""
    pytest.fail(
        "tidings_async_scenario builds the bus with a tidings_async_bootstrap fixture: define "
        "one in conftest.py returning a function from the AsyncMemoryStore to the "
        "AsyncMessageBus",
        pytrace=False,
    )


@pytest.fixture
def tidings_async_scenario(
    tidings_async_bootstrap: Callable[[AsyncMemoryStore], AsyncMessageBus],
) -> AsyncBusScenario:
    """An `AsyncBusScenario` over the bus `tidings_async_bootstrap` builds."""
    return AsyncBusScenario.using(tidings_async_bootstrap)


_REACHED = pytest.StashKey[str]()


def _postgres(config: pytest.Config) -> str:
    """The DSN of the PostgreSQL test database, or a skip saying how to name one.

    A database named but not reachable fails the test at once, with libpq's
    reason, rather than after the pool's timeout: it was asked for. It is
    tried once per session.
    """
    dsn: str | None = config.getoption("--tidings-postgres") or os.environ.get(POSTGRES_ENV)
    if not dsn:
        pytest.skip(f"no PostgreSQL database: pass --tidings-postgres=DSN or set {POSTGRES_ENV}")
    if config.stash.get(_REACHED, None) != dsn:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            pytest.fail(f"the PostgreSQL test database is not reachable: {reason}", pytrace=False)
        config.stash[_REACHED] = dsn
    return dsn


def _schema() -> str:
    return f"tidings_test_{uuid.uuid4().hex[:12]}"


def _drop(dsn: str, schema: str) -> None:
    """Drop a test's schema; the name is ours, made of hex digits, and quoted all the same."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
