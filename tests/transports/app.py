"""Events of the transport tests, and the stores they are kept in: SQLite or PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings import Codec, Envelope, Event
from tidings.store import NewEvent
from tidings.store.urls import open_async_store


@dataclass(frozen=True)
class OrderPlaced(Event, type_name="shop.OrderPlaced"):
    order: str
    amount: int


@dataclass(frozen=True)
class InvoiceSent(Event, type_name="shop.InvoiceSent"):
    order: str


CODEC = Codec(OrderPlaced, InvoiceSent)


def placed(order: str, amount: int = 1) -> NewEvent:
    return CODEC.new_event(Envelope.new(OrderPlaced(order, amount)))


def sent(order: str) -> NewEvent:
    return CODEC.new_event(Envelope.new(InvoiceSent(order)))


OpenStore = Callable[[], Any]
"""Opens the async store of the test (one database, however often it is opened)."""


@contextmanager
def store_url(kind: str, tmp_path: Path, name: str = "log") -> Iterator[str]:
    """The URL of an empty SQLite file or PostgreSQL schema, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    import psycopg
    from psycopg import sql

    from tests.services import postgres_dsn

    dsn = postgres_dsn()
    schema = f"transports_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@contextmanager
def store_opener(kind: str, tmp_path: Path, name: str = "log") -> Iterator[OpenStore]:
    with store_url(kind, tmp_path, name) as url:
        yield lambda: open_async_store(url)
