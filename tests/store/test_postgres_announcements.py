"""PostgreSQL commits are announced to listeners after they end, off the writers' path.

A `NOTIFY` is a transaction of its own, with a WAL flush under the cluster's
notification lock; writers must not wait for one, and many commits ending
together are announced by one, carrying the newest position.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.services import postgres_dsn
from tidings.store import NewEvent

pytest.importorskip("psycopg")
import psycopg
from psycopg import sql

from tidings.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

WRITERS = 8
APPENDS = 40  # each writer's


@pytest.fixture
def store() -> Iterator[PostgresStore]:
    schema = f"announce_{uuid.uuid4().hex[:12]}"
    opened = PostgresStore(postgres_dsn(), schema=schema, max_size=WRITERS)
    opened.stream_version("Warm-1")  # the schema exists before anyone listens
    yield opened
    opened.close()
    drop(schema)


def drop(schema: str) -> None:
    with psycopg.connect(postgres_dsn(), autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def event() -> NewEvent:
    return NewEvent(
        uuid.uuid4(), "tests.Announced", 1, b"{}", uuid.uuid4(), None, datetime.now(UTC)
    )


def listen(store: PostgresStore, payloads: list[int], stop: threading.Event) -> threading.Thread:
    listener = psycopg.connect(postgres_dsn(), autocommit=True)
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.notify_channel)))

    def run() -> None:
        with listener:
            while not stop.is_set():
                for notice in listener.notifies(timeout=0.05, stop_after=1):
                    payloads.append(int(notice.payload))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_lone_commit_is_announced_at_once_with_its_position(store: PostgresStore) -> None:
    payloads: list[int] = []
    stop = threading.Event()
    thread = listen(store, payloads, stop)
    try:
        position = store.append("Announced-1", [event()]).positions[-1]
        deadline = time.monotonic() + 2
        while position not in payloads and time.monotonic() < deadline:
            time.sleep(0.005)
        assert payloads == [position]
    finally:
        stop.set()
        thread.join()


def test_commits_of_many_writers_are_announced_together_up_to_the_newest(
    store: PostgresStore,
) -> None:
    payloads: list[int] = []
    stop = threading.Event()
    thread = listen(store, payloads, stop)
    newest: list[int] = []

    def write(index: int) -> None:
        for number in range(APPENDS):
            newest.append(store.append(f"Announced-{index}", [event()], number).positions[-1])

    try:
        writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        deadline = time.monotonic() + 2
        while max(payloads, default=0) < max(newest) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join()
    assert max(payloads) == max(newest), "the newest commit was never announced"
    assert payloads == sorted(payloads), "an announcement went back in the log"
    # One NOTIFY stands for every commit that ended while the one before was sent.
    assert len(payloads) < WRITERS * APPENDS / 2, len(payloads)


def test_closing_the_store_sends_the_announcement_still_pending() -> None:
    schema = f"announce_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_dsn(), schema=schema)
    store.stream_version("Warm-1")
    payloads: list[int] = []
    stop = threading.Event()
    thread = listen(store, payloads, stop)
    try:
        position = store.append("Announced-1", [event()]).positions[-1]
        store.close()  # at once: the announcement may not have gone yet
        deadline = time.monotonic() + 2
        while position not in payloads and time.monotonic() < deadline:
            time.sleep(0.005)
        assert position in payloads
    finally:
        stop.set()
        thread.join()
        drop(schema)
