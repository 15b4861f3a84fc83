"""The store backends the contract suite runs on, and a blocking view of async stores.

Each backend is one entry in `BACKENDS`: a context manager that prepares an
empty database for one test and yields an opener, which takes
`asynchronous` and returns a new store (blocking, or async) on it. The
suite runs every case on the blocking store and, through `Blocking`, on the
async one.
"""

from __future__ import annotations

import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from anyio.from_thread import BlockingPortal

from tests.services import postgres_dsn
from tests.store.readable import wait_readable
from tidings.store import AsyncMemoryStore, AsyncSQLiteStore, MemoryStore, SQLiteStore

Opener = Callable[[bool], Any]
Backend = Callable[[Path], AbstractContextManager[Opener]]


@contextmanager
def memory(tmp_path: Path) -> Iterator[Opener]:
    yield lambda asynchronous: AsyncMemoryStore() if asynchronous else MemoryStore()


@contextmanager
def sqlite(tmp_path: Path) -> Iterator[Opener]:
    path = tmp_path / "events.db"
    yield lambda asynchronous: AsyncSQLiteStore(path) if asynchronous else SQLiteStore(path)


@contextmanager
def postgres(tmp_path: Path) -> Iterator[Opener]:
    dsn = postgres_dsn()
    from tidings.store.postgres import AsyncPostgresStore, PostgresStore

    schema = f"contract_{uuid.uuid4().hex[:12]}"

    def open_store(asynchronous: bool) -> Any:
        if asynchronous:
            return AsyncPostgresStore(dsn, schema=schema)
        return PostgresStore(dsn, schema=schema)

    try:
        yield open_store
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


BACKENDS: dict[str, Backend] = {"memory": memory, "sqlite": sqlite, "postgres": postgres}


class Blocking:
    """The blocking API of an async store or transaction; calls run on the portal's loop.

    Calls from several threads run as concurrent tasks on that one loop.
    """

    def __init__(self, target: Any, portal: BlockingPortal) -> None:
        self._target = target
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self._portal.call(
            functools.partial(attribute, *args, **kwargs)
        )

    @contextmanager
    def transaction(self) -> Iterator[Blocking]:
        with self._portal.wrap_async_context_manager(self._target.transaction()) as tx:
            yield Blocking(tx, self._portal)

    def close(self) -> None:
        self._portal.call(self._target.aclose)


class Settling:
    """A store whose reads of `$all` first wait until what it committed is readable.

    PostgreSQL shows a commit to readers of `$all` once every older writing
    transaction of the cluster has ended, and the test server is shared: a
    test that reads right after it appends would fail whenever another's
    transaction is open. This waits (up to `patience` seconds, then reads
    anyway) until the head reaches the last position committed through it;
    it never waits for what its own open transactions appended.
    """

    READS = ("read_all", "read_correlated", "head_position", "watermark")

    def __init__(self, target: Any) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._committed = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name in self.READS:

            def settled(*args: Any, **kwargs: Any) -> Any:
                self._settle()
                return attribute(*args, **kwargs)

            return settled
        return attribute

    def append(self, *args: Any, **kwargs: Any) -> Any:
        result = self._target.append(*args, **kwargs)
        self._note(result.positions)
        return result

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        appended: list[int] = []
        with self._target.transaction() as tx:
            yield _NotingTransaction(tx, appended)
        self._note(appended)

    def _note(self, positions: Any) -> None:
        if positions:
            with self._lock:
                self._committed = max(self._committed, *positions)

    def _settle(self) -> None:
        wait_readable(self._target, self._committed)


class _NotingTransaction:
    """A transaction that notes the positions it appended, in case it commits."""

    def __init__(self, target: Any, appended: list[int]) -> None:
        self._target = target
        self._appended = appended

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def append(self, *args: Any, **kwargs: Any) -> Any:
        result = self._target.append(*args, **kwargs)
        self._appended.extend(result.positions)
        return result

    def rollback(self) -> None:
        self._appended.clear()
        self._target.rollback()
