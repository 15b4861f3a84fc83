"""The service's database, chosen by the store URL: products, read model and event log in one.

`TIDINGS_STORE` (see `tidings.store.urls`) names the event store: a SQLite
file (default `var/tidings.db`) or a PostgreSQL database and schema. The
SQLAlchemy engine is derived from the same URL, so the tables live beside the
log (in PostgreSQL, in the same schema), and one transaction holds both. The
read model is there too, written inline by its projection in that same
transaction: a command's rows, events and read model commit together.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateSchema

from examples.allocation.bootstrap import bootstrap
from examples.allocation.handlers import SendMail
from examples.allocation.orm import (
    SqlAlchemyProductsUnitOfWork,
    SqlAllocationsView,
    metadata,
    start_mappers,
)
from examples.allocation.views import projections
from tidings import MessageBus, Middleware
from tidings.integrations.sqlalchemy import JoinableStore
from tidings.projections import ProjectionRunner
from tidings.store.urls import (
    PostgresURL,
    SQLiteURL,
    default_store_url,
    open_store,
    parse_store_url,
)


@dataclass
class Database:
    """The engine, sessions and event store of one store URL.

    `writers` is set on SQLite, which admits one writer at a time: this
    process's writing transactions queue on it rather than in SQLite's busy loop.
    """

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    store: JoinableStore
    writers: threading.Lock | None

    def unit_of_work(self) -> SqlAlchemyProductsUnitOfWork:
        """A unit of work that keeps the read model inline, in the transaction of the events."""
        return SqlAlchemyProductsUnitOfWork(
            self.sessions, self.store, self.writers, inline=projections(self.store)
        )

    def bus(
        self,
        send_mail: SendMail | None = None,
        *,
        retry_waits: bool = True,
        middleware: Sequence[Middleware] = (),
    ) -> MessageBus:
        return bootstrap(
            unit_of_work=self.unit_of_work,
            views=SqlAllocationsView(self.engine),
            send_mail=send_mail,
            retry_waits=retry_waits,
            middleware=middleware,
        )

    def projection_runner(self) -> ProjectionRunner:
        """A runner of the read model's projection, not to run but to control it.

        The units of work keep the read model inline; the runner shows its
        status, waits for it (`wait_for`, for `?after`), and pauses or
        rebuilds it from the log. Running it (`running()`) would only race
        the units of work for the checkpoint.
        """
        return ProjectionRunner(self.store, projections(self.store))

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


def open_database(store_url: str | None = None) -> Database:
    """Open the store and engine that `store_url` (default: `TIDINGS_STORE`) names.

    Creates the tables if they are missing. The memory store is refused: the
    products live in SQL tables, which the log must share a database with.
    """
    url = store_url or default_store_url()
    target = parse_store_url(url)
    if isinstance(target, SQLiteURL):
        engine = _sqlite_engine(target.path)
    elif isinstance(target, PostgresURL):
        engine = _postgres_engine(target.conninfo, target.schema)
    else:
        raise ValueError("the allocation service needs a sqlite:/// or postgresql:// store URL")
    store = cast(JoinableStore, open_store(url))
    metadata.create_all(engine)
    start_mappers()
    writers = threading.Lock() if isinstance(target, SQLiteURL) else None
    return Database(url, engine, sessionmaker(engine, expire_on_commit=False), store, writers)


def _sqlite_engine(path: str) -> Engine:
    engine = create_engine(
        f"sqlite+pysqlite:///{os.path.abspath(path)}",
        connect_args={"timeout": 30.0},
        pool_size=20,
    )

    @event.listens_for(engine, "connect")
    def configure(connection: sqlite3.Connection, record: Any) -> None:
        # As the SQLite store opens its own: WAL, and commits that survive a power loss.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")

    return engine


def _postgres_engine(conninfo: str, schema: str) -> Engine:
    url = make_url(conninfo).set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_size=20)
    with engine.begin() as connection:
        connection.execute(CreateSchema(schema, if_not_exists=True))
    # The tables go in the store's schema, beside the log.
    return engine.execution_options(schema_translate_map={None: schema})
