"""Events stored in an older shape come back as the current class, through store and codec.

Old rows are written two ways: appended as `NewEvent`s carrying the old payload
and schema version (every backend), and inserted with raw SQL as an earlier
release would have left them (SQLite and PostgreSQL).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_dsn
from tests.store.backends import BACKENDS
from tests.store.readable import wait_readable
from tidings import Codec, Event, EventDecodeError, EventSourced, UnitOfWork, applies
from tidings.store import EventStore, NewEvent, RecordedEvent, SQLiteStore


@dataclass(frozen=True)
class Priced(Event, type_name="upcast.Priced", version=3):
    """v1 `{"item", "cents"}`; v2 renamed `item` to `sku`; v3 has a decimal price and currency."""

    sku: str
    price: Decimal
    currency: str


def upcasting_codec() -> Codec:
    codec = Codec(Priced)

    @codec.upcaster("upcast.Priced", from_version=1)
    def item_is_sku(data: dict[str, Any]) -> dict[str, Any]:
        return {"sku": data["item"], "cents": data["cents"]}

    @codec.upcaster("upcast.Priced", from_version=2)
    def cents_to_price(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "sku": data["sku"],
            "price": str(Decimal(data["cents"]) / 100),
            "currency": "EUR",
        }

    return codec


OLD_ROWS: list[tuple[int, bytes]] = [
    (1, b'{"item":"LAMP","cents":1250}'),
    (2, b'{"sku":"SOFA","cents":49900}'),
    (3, b'{"sku":"DESK","price":"120.00","currency":"USD"}'),
]

CURRENT = [
    Priced("LAMP", Decimal("12.5"), "EUR"),
    Priced("SOFA", Decimal("499"), "EUR"),
    Priced("DESK", Decimal("120.00"), "USD"),
]


def new_event(schema_version: int, data: bytes, type_name: str = "upcast.Priced") -> NewEvent:
    return NewEvent(
        event_id=uuid.uuid4(),
        type=type_name,
        schema_version=schema_version,
        data=data,
        correlation_id=uuid.uuid4(),
        causation_id=None,
        occurred_at=datetime(2020, 1, 1, tzinfo=UTC),
    )


def decoded(codec: Codec, records: list[RecordedEvent]) -> list[Event]:
    envelopes = [codec.envelope(record) for record in records]
    assert [(e.stream, e.version) for e in envelopes] == [(r.stream, r.version) for r in records]
    return [envelope.message for envelope in envelopes]


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
        for name in BACKENDS
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    with BACKENDS[request.param](tmp_path) as open_store:
        opened = open_store(False)
        try:
            yield opened
        finally:
            opened.close()


def test_old_payloads_appended_as_they_were_read_back_as_the_current_class(
    store: EventStore,
) -> None:
    store.append("Shop-1", [new_event(version, data) for version, data in OLD_ROWS])

    records = store.read_stream("Shop-1")

    assert [r.schema_version for r in records] == [1, 2, 3]
    assert decoded(upcasting_codec(), records) == CURRENT
    wait_readable(store)
    assert decoded(upcasting_codec(), store.read_all(types=["upcast.Priced"])) == CURRENT


def test_a_stored_version_without_its_upcaster_names_where_it_sits(store: EventStore) -> None:
    store.append("Shop-1", [new_event(1, OLD_ROWS[0][1])])
    record = store.read_stream("Shop-1")[0]

    with pytest.raises(EventDecodeError) as raised:
        Codec(Priced).envelope(record)

    error = raised.value
    assert (error.stream, error.version, error.type_name) == ("Shop-1", 1, "upcast.Priced")
    assert "no upcaster from v1 to v2" in str(error)


def test_a_stored_version_newer_than_the_class_is_refused(store: EventStore) -> None:
    store.append("Shop-1", [new_event(4, b'{"sku":"LAMP"}')])

    with pytest.raises(EventDecodeError, match="newer than Priced v3") as raised:
        upcasting_codec().envelope(store.read_stream("Shop-1")[0])
    assert raised.value.stream == "Shop-1"


# Rows as an earlier release left them, written with SQL


def insert_sqlite_rows(path: Path, stream: str) -> None:
    with sqlite3.connect(path) as raw:
        for version, (schema_version, data) in enumerate(OLD_ROWS, start=1):
            raw.execute(
                "INSERT INTO tidings_events (stream, category, version, event_id, type,"
                " schema_version, data, correlation_id, causation_id, occurred_at, headers)"
                " VALUES (?, ?, ?, ?, 'upcast.Priced', ?, ?, ?, NULL, ?, x'')",
                (
                    stream,
                    stream.partition("-")[0],
                    version,
                    uuid.uuid4().bytes,
                    schema_version,
                    data,
                    uuid.uuid4().bytes,
                    "2019-06-01T08:00:00+00:00",
                ),
            )
        raw.execute(
            "INSERT INTO tidings_streams (name, category) VALUES (?, ?)",
            (stream, stream.partition("-")[0]),
        )
    raw.close()


def test_old_rows_written_to_sqlite_read_back_as_the_current_class(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    try:
        assert store.read_all() == []  # the schema exists
        insert_sqlite_rows(path, "Shop-1")

        records = store.read_stream("Shop-1")

        assert [(r.version, r.schema_version) for r in records] == [(1, 1), (2, 2), (3, 3)]
        assert decoded(upcasting_codec(), records) == CURRENT
        assert store.append("Shop-1", [new_event(3, OLD_ROWS[2][1])], 3).version == 4
    finally:
        store.close()


class Shop(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.takings: dict[str, Decimal] = {}

    @applies
    def _priced(self, event: Priced) -> None:
        self.takings[event.currency] = self.takings.get(event.currency, Decimal()) + event.price


def test_an_aggregate_rebuilds_from_old_sqlite_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    try:
        store.read_all()
        insert_sqlite_rows(path, "Shop-1")

        uow = UnitOfWork(store, codec=upcasting_codec())
        with uow:
            shop = uow.repository(Shop).get("1")

        assert shop is not None
        assert shop.takings == {"EUR": Decimal("511.5"), "USD": Decimal("120.00")}
        assert shop.version == 3
    finally:
        store.close()


@pytest.mark.postgres
def test_old_rows_written_to_postgres_read_back_as_the_current_class() -> None:
    dsn = postgres_dsn()
    import psycopg
    from psycopg import sql

    from tidings.store.postgres import PostgresStore

    schema = f"upcast_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema=schema)
    try:
        assert store.read_all() == []  # the schema exists
        with psycopg.connect(dsn) as raw:
            for position, (schema_version, data) in enumerate(OLD_ROWS, start=1):
                raw.execute(
                    sql.SQL(
                        "INSERT INTO {} (position, stream, category, version, event_id, type,"
                        " schema_version, data, correlation_id, causation_id, occurred_at,"
                        " headers) VALUES (%s, 'Shop-1', 'Shop', %s, %s, 'upcast.Priced', %s,"
                        " %s, %s, NULL, '2019-06-01T08:00:00Z', '')"
                    ).format(sql.Identifier(schema, "events")),
                    (position, position, uuid.uuid4(), schema_version, data, uuid.uuid4()),
                )
            raw.execute(
                sql.SQL(
                    "INSERT INTO {} (name, category, version, last_position)"
                    " VALUES ('Shop-1', 'Shop', 3, 3)"
                ).format(sql.Identifier(schema, "streams"))
            )

        records = store.read_stream("Shop-1")

        assert [(r.version, r.schema_version) for r in records] == [(1, 1), (2, 2), (3, 3)]
        assert decoded(upcasting_codec(), records) == CURRENT
        assert decoded(upcasting_codec(), store.read_all()) == CURRENT
        assert store.append("Shop-1", [new_event(3, OLD_ROWS[2][1])], 3).version == 4
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
