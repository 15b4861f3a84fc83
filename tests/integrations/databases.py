"""The databases the integration tests run on: a SQLite file, or a fresh PostgreSQL schema.

Each yields a `Target`: the store URL, an engine whose tables go where the
store's do, and the event store. PostgreSQL schemas are dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.schema import CreateSchema, DropSchema

from tests.services import postgres_dsn
from tidings.store.urls import open_store


@dataclass
class Target:
    url: str
    engine: Engine
    store: Any


@contextmanager
def sqlite_target(tmp_path: Path) -> Iterator[Target]:
    path = tmp_path / "app.db"
    engine = create_engine(f"sqlite+pysqlite:///{path}", connect_args={"timeout": 10.0})
    store = open_store(f"sqlite:///{path}")
    try:
        yield Target(f"sqlite:///{path}", engine, store)
    finally:
        store.close()
        engine.dispose()


@contextmanager
def postgres_target(tmp_path: Path) -> Iterator[Target]:
    dsn = postgres_dsn()
    schema = f"integration_{uuid.uuid4().hex[:12]}"
    url = f"{dsn}?schema={schema}"
    base = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    with base.begin() as connection:
        connection.execute(CreateSchema(schema))
    store = open_store(url)
    try:
        yield Target(url, base.execution_options(schema_translate_map={None: schema}), store)
    finally:
        store.close()
        with base.begin() as connection:
            connection.execute(DropSchema(schema, cascade=True))
        base.dispose()


@contextmanager
def target_for(backend: str, tmp_path: Path) -> Iterator[Target]:
    opener = sqlite_target if backend == "sqlite" else postgres_target
    with opener(tmp_path) as target:
        yield target
