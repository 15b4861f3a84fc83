"""A unit of work around a SQLAlchemy `Session`: rows and events commit together or not at all.

Needs the `sqlalchemy` extra (`pip install "tidings[sqlalchemy]"`). The
session's own database connection carries the aggregates' new events: the
store's `joined(connection)` appends them inside the session's transaction,
so one `COMMIT` keeps both, and a failure keeps neither. The store and the
session must therefore use one database (the same SQLite file, or the same
PostgreSQL database).

::

    uow = SqlAlchemyUnitOfWork(sessionmaker(engine), store)
    class ProductsUnitOfWork(SqlAlchemyUnitOfWork):
        def __init__(self, session_factory, store):
            super().__init__(session_factory, store)
            self.products = SqlAlchemyRepository(self, Product)

    with uow:
        product = uow.products.get(sku)
        product.allocate(line)
        uow.commit()

Optimistic concurrency comes from SQLAlchemy: map a version column with
`version_id_col`, and a row that someone else changed since it was read
fails the commit with `StaleAggregate`, a `ConcurrencyError` a bus can retry.
Only a blocking variant exists: SQLAlchemy's asyncio layer would need async
DBAPI drivers (aiosqlite, asyncpg) that the stores do not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

try:
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.orm import Session
    from sqlalchemy.orm.exc import StaleDataError
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "tidings.integrations.sqlalchemy needs the sqlalchemy extra: "
        f'pip install "tidings[sqlalchemy]" ({exc})',
        name=exc.name,
    ) from exc

from tidings._sync.uow import Repository, UnitOfWork
from tidings.codec import Codec
from tidings.domain import Aggregate
from tidings.errors import ConcurrencyError
from tidings.projections.projection import Projection
from tidings.store._sync.base import EventStore, ReadModelTransaction
from tidings.store.placeholders import qmark_to_format
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)

__all__ = [
    "JoinableStore",
    "JoinedLog",
    "SessionTransaction",
    "SqlAlchemyRepository",
    "SqlAlchemyUnitOfWork",
    "StaleAggregate",
]

A = TypeVar("A", bound=Aggregate)

# SQLSTATEs of a transaction PostgreSQL gave up because another one got there first.
_CONFLICT_STATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class StaleAggregate(ConcurrencyError):
    """A row changed in the database since it was read; load it again and retry."""


class JoinedLog(Protocol):
    """The event log, working inside a transaction that someone else commits."""

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult: ...

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    def lock_stream(self, stream: str) -> None: ...

    def committed(self) -> None:
        """Called after the owner's commit, to wake the store's subscribers."""
        ...


class JoinableStore(EventStore, Protocol):
    """A store that can append on an application's own DBAPI connection (SQLite, PostgreSQL)."""

    def joined(self, connection: Any) -> JoinedLog: ...


class SessionTransaction:
    """The store transaction of a `SqlAlchemyUnitOfWork`: the session's transaction itself.

    Events go through the joined log on the session's connection; `commit`
    and `rollback` are the session's. `connection` is that DBAPI connection
    (`sqlite3` or psycopg), as a store transaction's is: inline projections
    write their read model through it. `writers`, if given, is held from
    `flush` until the transaction ends.
    """

    def __init__(
        self,
        session: Session,
        log: JoinedLog,
        writers: AbstractContextManager[Any] | None = None,
        *,
        connection: Any = None,
    ) -> None:
        self.session = session
        self.connection = connection
        self.finished = False
        self._log = log
        self._writers = writers
        self._writing = False

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        return self._log.append(stream, events, expected_version)

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return self._log.read_stream(
            stream, from_version=from_version, backwards=backwards, limit=limit
        )

    def lock_stream(self, stream: str) -> None:
        self._log.lock_stream(stream)

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        """Run an application statement on the session's connection, `?` for parameters."""
        self._driver_sql(statement, params)

    def query(self, statement: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """The rows of an application query on the session's connection, `?` for parameters."""
        return [tuple(row) for row in self._driver_sql(statement, params).fetchall()]

    def _driver_sql(self, statement: str, params: Sequence[object]) -> Any:
        connection = self.session.connection()
        if connection.dialect.paramstyle != "qmark":
            statement = qmark_to_format(statement)
        return connection.exec_driver_sql(statement, tuple(params))

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Statements as they come: the session decides when it sends them."""
        yield

    def flush(self) -> None:
        """Write the session's pending changes, so version conflicts show before events go in."""
        if self._writers is not None and not self._writing:
            self._writers.__enter__()
            self._writing = True
        with _conflicts_translated():
            self.session.flush()

    def commit(self) -> None:
        with _conflicts_translated():
            self.session.commit()
        self.finished = True
        self._done_writing()
        self._log.committed()

    def rollback(self) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.session.rollback()
            finally:
                self._done_writing()

    def _done_writing(self) -> None:
        if self._writing:
            self._writing = False
            assert self._writers is not None
            self._writers.__exit__(None, None, None)


class SqlAlchemyUnitOfWork(UnitOfWork):
    """A unit of work whose transaction is a SQLAlchemy session's, events included.

    Each `with` block opens a session from `session_factory`; `session` is it.
    `commit` flushes the session (a stale version raises `StaleAggregate`),
    appends the tracked aggregates' new events on the session's connection,
    then commits the session. Leaving the block without committing rolls
    both back. `inline` projections (see `UnitOfWork`) are applied to those
    events on the session's connection, so the read model commits with them.

    `writers` is for SQLite, which admits one writer at a time and lets the
    others wait in a busy loop that sleeps up to 100 ms between tries: give
    every unit of work (and any other writer) of the process one
    `threading.Lock`, held from the flush to the end of the transaction, and
    they queue on it instead. Reads stay outside it, so conflicts are still
    detected by the version column. Blocks of the process that `get` one
    aggregate take turns, as with `UnitOfWork`; with `lock_on_load`, a
    `SqlAlchemyRepository` loads its row `FOR UPDATE` and an event-sourced
    one locks its stream, so blocks of other processes wait too. Subclasses
    add repositories as attributes, as with `UnitOfWork`; a
    `SqlAlchemyRepository` works through `session`.
    `store` reads and writes the log outside any block, as usual.
    """

    store: JoinableStore

    def __init__(
        self,
        session_factory: Callable[[], Session],
        store: JoinableStore,
        *,
        codec: Codec | None = None,
        writers: AbstractContextManager[Any] | None = None,
        inline: Iterable[Projection[ReadModelTransaction]] = (),
        wait_for_aggregate: float | None = 5.0,
        lock_on_load: bool = False,
    ) -> None:
        super().__init__(
            store,
            codec=codec,
            inline=inline,
            wait_for_aggregate=wait_for_aggregate,
            lock_on_load=lock_on_load,
        )
        self._session_factory = session_factory
        self._writers = writers

    @contextmanager
    def begin(self) -> Iterator[SessionTransaction]:
        """A session, with the log joined to its connection, as the block's transaction."""
        with self._session_factory() as session:
            dbapi_connection = session.connection().connection.driver_connection
            log = self.store.joined(dbapi_connection)
            transaction = SessionTransaction(
                session, log, self._writers, connection=dbapi_connection
            )
            try:
                yield transaction
            except BaseException:
                transaction.rollback()
                raise
            if not transaction.finished:
                transaction.commit()

    @property
    def session(self) -> Session:
        """The session of the open block."""
        return self._session_transaction().session

    def commit(self) -> None:
        self._session_transaction().flush()
        super().commit()

    def _session_transaction(self) -> SessionTransaction:
        transaction = self.transaction
        assert isinstance(transaction, SessionTransaction)
        return transaction


class SqlAlchemyRepository(Repository[A]):
    """Aggregates of one mapped class, by primary key, in the unit of work's session."""

    def __init__(self, uow: SqlAlchemyUnitOfWork, mapped_class: type[A]) -> None:
        super().__init__()
        self.uow = uow
        self.mapped_class = mapped_class

    def _add(self, aggregate: A) -> None:
        self.uow.session.add(aggregate)

    def _get(self, aggregate_id: Any) -> A | None:
        # `SELECT ... FOR UPDATE` where the database has it (SQLite locks the whole file instead).
        lock = True if self.uow.lock_on_load else None
        return self.uow.session.get(self.mapped_class, aggregate_id, with_for_update=lock)


@contextmanager
def _conflicts_translated() -> Iterator[None]:
    """Raise `StaleAggregate` for a stale version, or a transaction PostgreSQL gave up on."""
    try:
        yield
    except StaleDataError as exc:
        raise StaleAggregate(f"changed by someone else since it was read: {exc}") from exc
    except sa_exc.DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state in _CONFLICT_STATES:
            raise StaleAggregate(f"the database gave up this transaction: {exc.orig}") from exc
        raise
