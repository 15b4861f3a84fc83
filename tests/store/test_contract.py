"""The event store contract: every backend, blocking and async, must pass every case here.

A backend is added with one entry in `tests/store/backends.py`.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from tests.store.backends import BACKENDS, Blocking, Settling
from tidings.errors import (
    ConcurrencyError,
    EventIdConflict,
    InvalidType,
    InvalidValue,
    StoreUnavailable,
    StreamNotFound,
    TidingsError,
    TransactionClosed,
    WrongExpectedVersion,
)
from tidings.store import (
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
    Watermark,
)
from tidings.store.checks import MAX_NAME_BYTES

ANY, NO_STREAM, STREAM_EXISTS = StreamState.ANY, StreamState.NO_STREAM, StreamState.STREAM_EXISTS

# How long a concurrency case may wait for what it expects before it fails.
PATIENCE = 10.0


@pytest.fixture(
    params=[
        pytest.param(
            (name, mode),
            id=f"{name}-{mode}",
            marks=[pytest.mark.postgres] if name == "postgres" else [],
        )
        for name in BACKENDS
        for mode in ("sync", "async")
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    name, mode = request.param
    # The PostgreSQL server is shared: reads wait for the tests' commits to be readable.
    settled: Callable[[Any], Any] = Settling if name == "postgres" else lambda store: store
    with BACKENDS[name](tmp_path) as open_store:
        if mode == "sync":
            blocking = open_store(False)
            try:
                yield settled(blocking)
            finally:
                blocking.close()
        else:
            with start_blocking_portal() as portal:
                wrapped: Any = Blocking(portal.call(open_store, True), portal)
                try:
                    yield settled(wrapped)
                finally:
                    wrapped.close()


_counter = itertools.count()


def new_events(count: int = 1, type: str = "Happened") -> list[NewEvent]:
    events = []
    for _ in range(count):
        n = next(_counter)
        events.append(
            NewEvent(
                event_id=uuid.uuid4(),
                type=type,
                schema_version=1,
                data=b'{"n":%d}' % n,
                correlation_id=uuid.uuid4(),
                causation_id=None,
                occurred_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=n),
            )
        )
    return events


def ids(records: list[RecordedEvent]) -> list[uuid.UUID]:
    return [record.event_id for record in records]


def versions(records: list[RecordedEvent]) -> list[int]:
    return [record.version for record in records]


def assert_increasing(positions: list[int]) -> None:
    assert all(b > a for a, b in itertools.pairwise(positions)), positions
    assert all(p >= 1 for p in positions), positions


class Background(threading.Thread):
    """A thread whose failure `finish` raises in the test."""

    def __init__(self, target: Callable[..., object], *args: object) -> None:
        super().__init__(daemon=True)
        self._work = target
        self._args = args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work(*self._args)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(PATIENCE * 2)
        assert not self.is_alive(), "a thread did not finish"
        if self.error is not None:
            raise self.error


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [Background(target, index) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.finish()


# Appending and reading back


def test_append_numbers_versions_from_1_and_reads_back_every_field(store: EventStore) -> None:
    events = new_events(3)
    caused = uuid.uuid4()
    events[1] = NewEvent(
        event_id=uuid.uuid4(),
        type="Other",
        schema_version=3,
        data=b"\x00\xffbinary",
        correlation_id=uuid.uuid4(),
        causation_id=caused,
        occurred_at=datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        headers=b'{"user":"ann"}',
    )

    result = store.append("Order-1", events, NO_STREAM)

    assert result.stream == "Order-1"
    assert result.version == 3
    assert len(result.positions) == 3
    assert_increasing(list(result.positions))
    records = store.read_stream("Order-1")
    assert [r.position for r in records] == list(result.positions)
    for record, event, version in zip(records, events, [1, 2, 3], strict=True):
        assert record.stream == "Order-1"
        assert record.version == version
        assert record.category == "Order"
        assert record.event_id == event.event_id
        assert record.type == event.type
        assert record.schema_version == event.schema_version
        assert record.data == event.data
        assert record.correlation_id == event.correlation_id
        assert record.causation_id == event.causation_id
        assert record.occurred_at == event.occurred_at
        assert record.headers == event.headers


def test_appends_continue_versions_and_increase_positions(store: EventStore) -> None:
    first = store.append("Order-1", new_events(2))
    other = store.append("Order-2", new_events(1))
    second = store.append("Order-1", new_events(2))

    assert (first.version, other.version, second.version) == (2, 1, 4)
    assert_increasing([*first.positions, *other.positions, *second.positions])
    assert versions(store.read_stream("Order-1")) == [1, 2, 3, 4]
    assert store.stream_version("Order-1") == 4
    assert store.stream_version("Order-2") == 1


def test_stream_version_of_a_missing_stream_is_none(store: EventStore) -> None:
    assert store.stream_version("Order-404") is None
    assert store.read_stream("Order-404") == []


def test_appending_no_events_changes_nothing(store: EventStore) -> None:
    assert store.append("Order-1", [], NO_STREAM) == AppendResult("Order-1", 0, ())
    assert store.stream_version("Order-1") is None
    store.append("Order-1", new_events(2))

    assert store.append("Order-1", [], 2) == AppendResult("Order-1", 2, ())
    with pytest.raises(WrongExpectedVersion):
        store.append("Order-1", [], 1)
    assert len(store.read_all()) == 2


# Expected versions

SUCCEEDS = [
    pytest.param(0, ANY, id="any-new"),
    pytest.param(2, ANY, id="any-existing"),
    pytest.param(0, NO_STREAM, id="no-stream-new"),
    pytest.param(2, STREAM_EXISTS, id="stream-exists-existing"),
    pytest.param(0, 0, id="exact-0-new"),
    pytest.param(2, 2, id="exact-existing"),
]

CONFLICTS = [
    pytest.param(2, NO_STREAM, 2, id="no-stream-existing"),
    pytest.param(0, STREAM_EXISTS, None, id="stream-exists-new"),
    pytest.param(2, 0, 2, id="exact-0-existing"),
    pytest.param(2, 1, 2, id="exact-behind"),
    pytest.param(2, 3, 2, id="exact-ahead"),
    pytest.param(0, 1, None, id="exact-1-new"),
]


@pytest.mark.parametrize(("existing", "expected"), SUCCEEDS)
def test_expected_version_met(store: EventStore, existing: int, expected: ExpectedVersion) -> None:
    if existing:
        store.append("Order-1", new_events(existing))

    result = store.append("Order-1", new_events(1), expected)

    assert result.version == existing + 1
    assert store.stream_version("Order-1") == existing + 1


@pytest.mark.parametrize(("existing", "expected", "actual"), CONFLICTS)
def test_expected_version_conflict_names_stream_expected_and_actual(
    store: EventStore, existing: int, expected: ExpectedVersion, actual: int | None
) -> None:
    if existing:
        store.append("Order-1", new_events(existing))
    before = store.read_all()

    with pytest.raises(WrongExpectedVersion) as raised:
        store.append("Order-1", new_events(2), expected)

    error = raised.value
    assert isinstance(error, ConcurrencyError)
    assert (error.stream, error.expected, error.actual) == ("Order-1", expected, actual)
    assert "Order-1" in str(error)
    assert store.read_all() == before
    assert store.stream_version("Order-1") == actual


# Repeated event ids


def test_appending_the_same_batch_again_stores_it_once(store: EventStore) -> None:
    batch = new_events(3)
    first = store.append("Order-1", batch, NO_STREAM)
    store.append("Order-2", new_events(1))

    again = store.append("Order-1", batch, NO_STREAM)

    assert again == first
    assert ids(store.read_stream("Order-1")) == ids_of(batch)
    assert len(store.read_all()) == 4


def test_a_repeated_batch_inside_a_transaction_is_stored_once(store: EventStore) -> None:
    batch = new_events(2)
    with store.transaction() as tx:
        first = tx.append("Order-1", batch)
        assert tx.append("Order-1", batch) == first
    assert ids(store.read_all()) == ids_of(batch)


def test_a_batch_that_partly_overlaps_a_stored_one_is_refused(store: EventStore) -> None:
    stored = new_events(2)
    store.append("Order-1", stored)

    with pytest.raises(EventIdConflict):
        store.append("Order-1", [stored[1], *new_events(1)])
    with pytest.raises(EventIdConflict):
        store.append("Order-2", stored)
    assert ids(store.read_all()) == ids_of(stored)


def test_a_batch_that_repeats_an_id_is_refused(store: EventStore) -> None:
    event = new_events(1)[0]
    with pytest.raises(EventIdConflict):
        store.append("Order-1", [event, event])
    assert store.read_all() == []


def ids_of(events: list[NewEvent]) -> list[uuid.UUID]:
    return [event.event_id for event in events]


# Malformed calls


def one_event(**changes: Any) -> NewEvent:
    """A new event with some fields replaced, even by values of the wrong type."""
    return replace(new_events(1)[0], **changes)


LONG_NAME = "x" * 1025
UNENCODABLE = "Order-\ud800"

# (stream, events, expected version) an append refuses, and the error it raises.
BAD_APPENDS = [
    pytest.param(lambda: ("", new_events(1), ANY), InvalidValue, id="empty-stream"),
    pytest.param(lambda: ("$all", new_events(1), ANY), InvalidValue, id="dollar-stream"),
    pytest.param(lambda: ("Order\x00-1", new_events(1), ANY), InvalidValue, id="nul-stream"),
    pytest.param(lambda: (LONG_NAME, new_events(1), ANY), InvalidValue, id="long-stream"),
    pytest.param(lambda: ("é" * 513, new_events(1), ANY), InvalidValue, id="long-utf8-stream"),
    pytest.param(lambda: (UNENCODABLE, new_events(1), ANY), InvalidValue, id="surrogate-stream"),
    pytest.param(lambda: (42, new_events(1), ANY), InvalidType, id="int-stream"),
    pytest.param(lambda: (None, new_events(1), ANY), InvalidType, id="none-stream"),
    pytest.param(lambda: ("Order-1", new_events(1)[0], ANY), InvalidType, id="bare-event"),
    pytest.param(lambda: ("Order-1", ["event"], ANY), InvalidType, id="str-payload"),
    pytest.param(lambda: ("Order-1", [object()], ANY), InvalidType, id="object-payload"),
    pytest.param(lambda: ("Order-1", iter(new_events(1)), ANY), InvalidType, id="iterator"),
    pytest.param(lambda: ("Order-1", [one_event(data="{}")], ANY), InvalidType, id="str-data"),
    pytest.param(
        lambda: ("Order-1", [one_event(data=bytearray(b"{}"))], ANY), InvalidType, id="bytearray"
    ),
    pytest.param(lambda: ("Order-1", [one_event(headers="{}")], ANY), InvalidType, id="headers"),
    pytest.param(lambda: ("Order-1", [one_event(type="")], ANY), InvalidValue, id="empty-type"),
    pytest.param(lambda: ("Order-1", [one_event(type="A\x00")], ANY), InvalidValue, id="nul-type"),
    pytest.param(lambda: ("Order-1", [one_event(type=LONG_NAME)], ANY), InvalidValue, id="long"),
    pytest.param(lambda: ("Order-1", [one_event(type=7)], ANY), InvalidType, id="int-type"),
    pytest.param(
        lambda: ("Order-1", [one_event(schema_version=0)], ANY), InvalidValue, id="version-0"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(schema_version=2**31)], ANY), InvalidValue, id="version-big"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(schema_version="1")], ANY), InvalidType, id="version-str"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(schema_version=True)], ANY), InvalidType, id="version-bool"
    ),
    pytest.param(lambda: ("Order-1", [one_event(event_id="e-1")], ANY), InvalidType, id="str-id"),
    pytest.param(
        lambda: ("Order-1", [one_event(correlation_id=1)], ANY), InvalidType, id="correlation"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(causation_id="c")], ANY), InvalidType, id="causation"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(occurred_at="2024-01-01")], ANY), InvalidType, id="time"
    ),
    pytest.param(
        lambda: ("Order-1", [one_event(occurred_at=datetime(2024, 1, 1))], ANY),
        InvalidValue,
        id="naive-time",
    ),
    pytest.param(lambda: ("Order-1", new_events(1), -1), InvalidValue, id="negative-expected"),
    pytest.param(lambda: ("Order-1", new_events(1), 2**63), InvalidValue, id="huge-expected"),
    pytest.param(lambda: ("Order-1", new_events(1), True), InvalidType, id="bool-expected"),
    pytest.param(lambda: ("Order-1", new_events(1), "any"), InvalidType, id="str-expected"),
    pytest.param(lambda: ("Order-1", new_events(1), 1.0), InvalidType, id="float-expected"),
    pytest.param(
        lambda: ("Order-1", [*new_events(1), one_event(data="{}")], ANY),
        InvalidType,
        id="second-event-bad",
    ),
]


def assert_refused(raised: pytest.ExceptionInfo[Exception], error: type[Exception]) -> None:
    """Refused with `error`, which is a tidings error and the builtin it stands for."""
    assert isinstance(raised.value, error)
    assert isinstance(raised.value, TidingsError)
    builtin = ValueError if error is InvalidValue else TypeError
    assert isinstance(raised.value, builtin)


@pytest.mark.parametrize(("call", "error"), BAD_APPENDS)
def test_a_malformed_append_is_refused_and_writes_nothing(
    store: EventStore, call: Callable[[], tuple[Any, Any, Any]], error: type[Exception]
) -> None:
    stream, events, expected = call()
    with pytest.raises(error) as raised:
        store.append(stream, events, expected)
    assert_refused(raised, error)

    with pytest.raises(error), store.transaction() as tx:
        tx.append("Order-2", new_events(1))
        tx.append(stream, events, expected)

    assert store.read_all() == []
    assert store.list_streams(include_deleted=True) == []


BAD_READS = [
    pytest.param(lambda s: s.read_stream("Order\x00-1"), InvalidValue, id="stream-nul"),
    pytest.param(lambda s: s.read_stream(UNENCODABLE), InvalidValue, id="stream-surrogate"),
    pytest.param(lambda s: s.read_stream(5), InvalidType, id="stream-int"),
    pytest.param(lambda s: s.read_stream("Order-1", from_version=-1), InvalidValue, id="from"),
    pytest.param(lambda s: s.read_stream("Order-1", from_version=2**63), InvalidValue, id="far"),
    pytest.param(lambda s: s.read_stream("Order-1", from_version="1"), InvalidType, id="from-s"),
    pytest.param(lambda s: s.read_stream("Order-1", limit=-1), InvalidValue, id="stream-limit"),
    pytest.param(lambda s: s.read_stream("Order-1", limit="3"), InvalidType, id="limit-str"),
    pytest.param(lambda s: s.read_all(limit=-1), InvalidValue, id="all-limit"),
    pytest.param(lambda s: s.read_all(limit=2.5), InvalidType, id="all-limit-float"),
    pytest.param(lambda s: s.read_all(after=-1), InvalidValue, id="after-negative"),
    pytest.param(lambda s: s.read_all(after="0"), InvalidType, id="after-str"),
    pytest.param(lambda s: s.read_all(categories="Order"), InvalidType, id="categories-str"),
    pytest.param(lambda s: s.read_all(categories=["A\x00"]), InvalidValue, id="category-nul"),
    pytest.param(lambda s: s.read_all(types=[1]), InvalidType, id="type-int"),
    pytest.param(lambda s: s.read_all(types="Placed"), InvalidType, id="types-str"),
    pytest.param(lambda s: s.read_correlated("c-1"), InvalidType, id="correlated-str"),
    pytest.param(lambda s: s.read_correlated(uuid.uuid4(), limit=-1), InvalidValue, id="c-limit"),
    pytest.param(lambda s: s.stream_version("Order\x00-1"), InvalidValue, id="version-nul"),
    pytest.param(lambda s: s.stream_version(None), InvalidType, id="version-none"),
    pytest.param(lambda s: s.read_snapshot("Order\x00-1"), InvalidValue, id="snapshot-nul"),
    pytest.param(lambda s: s.list_streams("Order\x00"), InvalidValue, id="list-category"),
    pytest.param(lambda s: s.list_streams(after="Order\x00"), InvalidValue, id="list-after"),
    pytest.param(lambda s: s.list_streams(limit=-1), InvalidValue, id="list-limit"),
    pytest.param(lambda s: s.list_streams(limit=None), InvalidType, id="list-limit-none"),
]


@pytest.mark.parametrize(("call", "error"), BAD_READS)
def test_a_malformed_read_is_refused(
    store: EventStore, call: Callable[[Any], object], error: type[Exception]
) -> None:
    store.append("Order-1", new_events(1))
    with pytest.raises(error) as raised:
        call(store)
    assert_refused(raised, error)


BAD_WRITES = [
    pytest.param(lambda s: s.delete_stream("Order\x00-1"), InvalidValue, id="delete-nul"),
    pytest.param(lambda s: s.delete_stream("Order-1", -2), InvalidValue, id="delete-expected"),
    pytest.param(lambda s: s.delete_stream(3), InvalidType, id="delete-int"),
    pytest.param(
        lambda s: s.save_snapshot(Snapshot("Order\x00-1", 1, "shape", b"{}")),
        InvalidValue,
        id="snapshot-stream",
    ),
    pytest.param(
        lambda s: s.save_snapshot(Snapshot("Order-1", 1, "sha\x00pe", b"{}")),
        InvalidValue,
        id="snapshot-shape",
    ),
    pytest.param(
        lambda s: s.save_snapshot(Snapshot("Order-1", 1, "shape", "{}")),  # type: ignore[arg-type]
        InvalidType,
        id="snapshot-str-data",
    ),
    pytest.param(
        lambda s: s.save_snapshot(Snapshot("Order-1", -1, "shape", b"{}")),
        InvalidValue,
        id="snapshot-version",
    ),
    pytest.param(lambda s: s.save_snapshot(("Order-1", 1)), InvalidType, id="snapshot-tuple"),
]


@pytest.mark.parametrize(("call", "error"), BAD_WRITES)
def test_a_malformed_delete_or_snapshot_is_refused_and_changes_nothing(
    store: EventStore, call: Callable[[Any], object], error: type[Exception]
) -> None:
    store.append("Order-1", new_events(1))
    with pytest.raises(error) as raised:
        call(store)
    assert_refused(raised, error)
    assert store.list_streams(include_deleted=True) == [StreamInfo("Order-1", 1, 1, False)]
    assert store.read_snapshot("Order-1") is None


def test_names_up_to_the_limit_are_stored_and_longer_ones_are_not_found(
    store: EventStore,
) -> None:
    longest = "Order-" + "é" * ((MAX_NAME_BYTES - 6) // 2)
    assert len(longest.encode()) == MAX_NAME_BYTES
    store.append(longest, [one_event(type="T" * MAX_NAME_BYTES)])

    (record,) = store.read_stream(longest)
    assert (record.stream, record.type) == (longest, "T" * MAX_NAME_BYTES)
    assert store.stream_version(longest) == 1
    assert store.read_stream(longest + "é" * 2000) == []
    assert store.stream_version(longest + "é" * 2000) is None


def test_nul_bytes_in_data_and_headers_are_kept(store: EventStore) -> None:
    event = one_event(data=b"\x00{}\x00", headers=b'{"k":"\\u0000"}\x00')
    store.append("Order-1", [event])
    (record,) = store.read_stream("Order-1")
    assert (record.data, record.headers) == (event.data, event.headers)


# Reading a stream


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, [1, 2, 3, 4, 5], id="all"),
        pytest.param({"from_version": 3}, [3, 4, 5], id="from"),
        pytest.param({"from_version": 2, "limit": 2}, [2, 3], id="from-limit"),
        pytest.param({"limit": 0}, [], id="limit-0"),
        pytest.param({"from_version": 6}, [], id="from-beyond"),
        pytest.param({"backwards": True}, [5, 4, 3, 2, 1], id="backwards"),
        pytest.param({"backwards": True, "limit": 2}, [5, 4], id="backwards-limit"),
        pytest.param({"backwards": True, "from_version": 3}, [3, 2, 1], id="backwards-from"),
        pytest.param(
            {"backwards": True, "from_version": 9, "limit": 3}, [5, 4, 3], id="backwards-beyond"
        ),
        pytest.param({"backwards": True, "from_version": 0}, [], id="backwards-from-0"),
    ],
)
def test_read_stream(store: EventStore, kwargs: dict[str, Any], expected: list[int]) -> None:
    store.append("Order-1", new_events(2))
    store.append("Order-2", new_events(1))
    store.append("Order-1", new_events(3))

    records = store.read_stream("Order-1", **kwargs)

    assert versions(records) == expected
    assert all(record.stream == "Order-1" for record in records)


# Reading $all


@pytest.fixture
def mixed(store: EventStore) -> list[RecordedEvent]:
    """Order-1: Placed, Paid; Customer-7: Joined; Order-2: Placed; Order-1: Shipped."""
    store.append("Order-1", [*new_events(1, "Placed"), *new_events(1, "Paid")])
    store.append("Customer-7", new_events(1, "Joined"))
    store.append("Order-2", new_events(1, "Placed"))
    store.append("Order-1", new_events(1, "Shipped"))
    return store.read_all()


def test_read_all_returns_every_event_in_commit_order(
    store: EventStore, mixed: list[RecordedEvent]
) -> None:
    assert [(r.stream, r.version, r.type) for r in mixed] == [
        ("Order-1", 1, "Placed"),
        ("Order-1", 2, "Paid"),
        ("Customer-7", 1, "Joined"),
        ("Order-2", 1, "Placed"),
        ("Order-1", 3, "Shipped"),
    ]
    assert_increasing([r.position for r in mixed])


def test_read_all_after_a_position_and_with_a_limit(
    store: EventStore, mixed: list[RecordedEvent]
) -> None:
    positions = [r.position for r in mixed]

    assert store.read_all(after=positions[1]) == mixed[2:]
    assert store.read_all(after=positions[1], limit=2) == mixed[2:4]
    assert store.read_all(limit=1) == mixed[:1]
    assert store.read_all(limit=0) == []
    assert store.read_all(after=positions[-1]) == []


def test_read_all_pages_through_the_log(store: EventStore, mixed: list[RecordedEvent]) -> None:
    pages: list[RecordedEvent] = []
    after = 0
    while page := store.read_all(after=after, limit=2):
        pages.extend(page)
        after = page[-1].position
    assert pages == mixed


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"categories": ["Order"]}, [0, 1, 3, 4], id="category"),
        pytest.param({"categories": {"Customer", "Order"}}, [0, 1, 2, 3, 4], id="categories"),
        pytest.param({"categories": ["Nothing"]}, [], id="unknown-category"),
        pytest.param({"categories": []}, [], id="no-categories"),
        pytest.param({"types": ["Placed"]}, [0, 3], id="type"),
        pytest.param({"types": ("Placed", "Joined")}, [0, 2, 3], id="types"),
        pytest.param({"categories": ["Order"], "types": ["Placed", "Joined"]}, [0, 3], id="both"),
        pytest.param({"types": ["Placed", "Shipped"], "limit": 2}, [0, 3], id="type-limit"),
    ],
)
def test_read_all_filters_by_category_and_type(
    store: EventStore,
    mixed: list[RecordedEvent],
    filters: dict[str, Any],
    expected: list[int],
) -> None:
    assert store.read_all(**filters) == [mixed[i] for i in expected]
    if "limit" not in filters:
        after_first = [mixed[i] for i in expected if i > 0]
        assert store.read_all(after=mixed[0].position, **filters) == after_first


# Reading one correlation id, and the head of $all


def in_request(correlation_id: uuid.UUID, count: int = 1) -> list[NewEvent]:
    """Events of the request `correlation_id`."""
    return [replace(event, correlation_id=correlation_id) for event in new_events(count)]


def test_read_correlated_keeps_each_request_apart_in_all_order(store: EventStore) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    store.append("Order-1", [*in_request(first), *in_request(second), *in_request(first)])
    store.append("Payment-1", in_request(second, 2))
    store.append("Order-2", new_events(3))
    with store.transaction() as tx:
        tx.append("Shipment-1", in_request(first))
        tx.append("Order-1", in_request(second))
    store.append("Payment-2", in_request(first))
    log = store.read_all()

    for request, count in ((first, 4), (second, 4)):
        found = store.read_correlated(request)
        assert found == [record for record in log if record.correlation_id == request]
        assert len(found) == count
        assert_increasing([record.position for record in found])


def test_read_correlated_of_an_unknown_id_is_empty(store: EventStore) -> None:
    assert store.read_correlated(uuid.uuid4()) == []
    store.append("Order-1", new_events(2))
    assert store.read_correlated(uuid.uuid4()) == []


def test_read_correlated_with_a_limit_returns_the_first_events(store: EventStore) -> None:
    request = uuid.uuid4()
    for index in range(4):
        store.append(f"Order-{index}", [*new_events(1), *in_request(request)])
    found = store.read_correlated(request)

    assert len(found) == 4
    assert store.read_correlated(request, limit=3) == found[:3]
    assert store.read_correlated(request, limit=10) == found
    assert store.read_correlated(request, limit=0) == []


def test_read_correlated_includes_events_of_deleted_streams(store: EventStore) -> None:
    request = uuid.uuid4()
    store.append("Order-1", in_request(request, 2))
    store.append("Payment-1", in_request(request))
    store.delete_stream("Order-1")

    assert [(r.stream, r.version) for r in store.read_correlated(request)] == [
        ("Order-1", 1),
        ("Order-1", 2),
        ("Payment-1", 1),
    ]


def test_read_correlated_leaves_out_uncommitted_and_rolled_back_events(
    store: EventStore,
) -> None:
    request = uuid.uuid4()
    committed = store.append("Order-1", in_request(request))
    with store.transaction() as tx:
        tx.append("Order-2", in_request(request))
        assert [r.position for r in store.read_correlated(request)] == list(committed.positions)
        tx.rollback()

    assert [r.position for r in store.read_correlated(request)] == list(committed.positions)


def test_head_position_is_the_last_position_of_all(store: EventStore) -> None:
    assert store.head_position() == 0

    store.append("Order-1", new_events(2))
    assert store.head_position() == store.read_all()[-1].position
    last = store.append("Order-2", new_events(1)).positions[-1]
    store.delete_stream("Order-2")

    assert store.head_position() == last
    assert store.read_all(after=store.head_position()) == []


def test_head_position_stays_put_while_a_transaction_is_open_or_rolled_back(
    store: EventStore,
) -> None:
    (head,) = store.append("Order-1", new_events(1)).positions
    with store.transaction() as tx:
        tx.append("Order-2", new_events(2))
        assert store.head_position() == head
        tx.rollback()
    assert store.head_position() == head

    with store.transaction() as tx:
        appended = tx.append("Order-2", new_events(2))
        assert store.head_position() == head
    assert store.head_position() == appended.positions[-1]


def test_the_watermark_shows_what_readers_are_held_back_from(store: EventStore) -> None:
    assert store.watermark() == Watermark(0, 0, 0, 0.0)
    last = store.append("Order-1", new_events(3)).positions[-1]

    # On PostgreSQL any transaction of the cluster may hold readers back a while.
    deadline = time.monotonic() + PATIENCE
    while (mark := store.watermark()).held_back and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mark == Watermark(last, last, 0, 0.0)
    assert mark.head == store.head_position()


# Transactions


def test_a_transaction_commits_its_appends_together(store: EventStore) -> None:
    with store.transaction() as tx:
        tx.append("Order-1", new_events(2), NO_STREAM)
        tx.append("Order-2", new_events(1), NO_STREAM)
        assert store.read_all() == []
        assert store.stream_version("Order-1") is None

    assert [(r.stream, r.version) for r in store.read_all()] == [
        ("Order-1", 1),
        ("Order-1", 2),
        ("Order-2", 1),
    ]


def test_an_explicit_commit_ends_the_transaction(store: EventStore) -> None:
    with store.transaction() as tx:
        result = tx.append("Order-1", new_events(1))
        tx.commit()
        with pytest.raises(TransactionClosed, match="open a new one"):
            tx.append("Order-1", new_events(1))
    assert [r.position for r in store.read_all()] == list(result.positions)


def test_rollback_discards_the_appends(store: EventStore) -> None:
    store.append("Order-1", new_events(1))
    with store.transaction() as tx:
        tx.append("Order-1", new_events(2), 1)
        tx.append("Order-2", new_events(1))
        tx.rollback()

    assert versions(store.read_stream("Order-1")) == [1]
    assert store.stream_version("Order-2") is None
    assert len(store.read_all()) == 1


def test_an_exception_rolls_back_and_propagates(store: EventStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        tx.append("Order-1", new_events(2))
        raise Boom

    assert store.read_all() == []
    store.append("Order-1", new_events(1), NO_STREAM)
    assert versions(store.read_stream("Order-1")) == [1]


def test_reads_inside_a_transaction_see_its_own_appends(store: EventStore) -> None:
    store.append("Order-1", new_events(2))
    with store.transaction() as tx:
        tx.append("Order-1", new_events(1), 2)
        tx.append("Order-2", new_events(2), NO_STREAM)

        assert versions(tx.read_stream("Order-1")) == [1, 2, 3]
        assert versions(tx.read_stream("Order-1", backwards=True, limit=2)) == [3, 2]
        assert versions(tx.read_stream("Order-2", from_version=2)) == [2]
        tx.append("Order-2", new_events(1), 2)

    assert versions(store.read_stream("Order-2")) == [1, 2, 3]


def test_expected_versions_inside_a_transaction_count_its_own_appends(store: EventStore) -> None:
    with pytest.raises(WrongExpectedVersion) as raised, store.transaction() as tx:
        tx.append("Order-1", new_events(1), NO_STREAM)
        tx.append("Order-1", new_events(1), NO_STREAM)

    assert (raised.value.expected, raised.value.actual) == (NO_STREAM, 1)
    assert store.read_all() == []


def test_a_transaction_locks_a_stream_then_reads_and_appends_to_it(store: EventStore) -> None:
    store.append("Order-1", new_events(1))
    with store.transaction() as tx:
        tx.lock_stream("Order-1")
        tx.lock_stream("Order-1")  # a transaction never waits for its own lock
        tx.lock_stream("Order-2")  # a stream that does not exist yet
        assert versions(tx.read_stream("Order-1")) == [1]
        tx.append("Order-1", new_events(1), 1)
        tx.append("Order-2", new_events(1), NO_STREAM)

    assert versions(store.read_stream("Order-1")) == [1, 2]
    assert versions(store.read_stream("Order-2")) == [1]


def test_locking_a_stream_checks_its_name_and_the_transaction(store: EventStore) -> None:
    with store.transaction() as tx:
        with pytest.raises(InvalidValue, match="NUL"):
            tx.lock_stream("Order\x00-1")
        tx.append("Order-1", new_events(1), NO_STREAM)  # the refusal ended nothing
        tx.commit()
        with pytest.raises(TransactionClosed, match="open a new one"):
            tx.lock_stream("Order-1")
    assert versions(store.read_stream("Order-1")) == [1]


# Listing and soft delete


def test_list_streams_in_name_order_with_versions(store: EventStore) -> None:
    for name in ["Order-2", "Customer-1", "Order-10", "Order-1"]:
        store.append(name, new_events(2 if name == "Order-10" else 1))

    listed = store.list_streams()

    assert listed == [
        StreamInfo("Customer-1", 1, 1, False),
        StreamInfo("Order-1", 1, 1, False),
        StreamInfo("Order-10", 2, 1, False),
        StreamInfo("Order-2", 1, 1, False),
    ]
    assert [info.category for info in listed] == ["Customer", "Order", "Order", "Order"]
    assert [i.name for i in store.list_streams("Order")] == ["Order-1", "Order-10", "Order-2"]
    assert store.list_streams("Nothing") == []


def test_list_streams_pages_by_name(store: EventStore) -> None:
    names = [f"Order-{n:02d}" for n in range(7)] + ["Customer-1", "Customer-2"]
    for name in names:
        store.append(name, new_events(1))

    pages: list[list[str]] = []
    after = None
    while page := store.list_streams("Order", after=after, limit=3):
        pages.append([info.name for info in page])
        after = page[-1].name

    assert pages == [
        ["Order-00", "Order-01", "Order-02"],
        ["Order-03", "Order-04", "Order-05"],
        ["Order-06"],
    ]
    assert [i.name for i in store.list_streams(after="Customer-1")][:2] == [
        "Customer-2",
        "Order-00",
    ]
    assert store.list_streams(limit=0) == []


def test_a_deleted_stream_reads_as_absent_but_stays_in_all(store: EventStore) -> None:
    store.append("Order-1", new_events(3))
    store.append("Order-2", new_events(1))
    log = store.read_all()

    store.delete_stream("Order-1", 3)

    assert store.read_stream("Order-1") == []
    assert store.read_stream("Order-1", backwards=True) == []
    assert store.stream_version("Order-1") is None
    assert [info.name for info in store.list_streams()] == ["Order-2"]
    assert store.list_streams(include_deleted=True) == [
        StreamInfo("Order-1", 3, 4, True),
        StreamInfo("Order-2", 1, 1, False),
    ]
    assert store.read_all() == log


def test_deleting_a_missing_or_deleted_stream_is_not_found(store: EventStore) -> None:
    with pytest.raises(StreamNotFound):
        store.delete_stream("Order-1")
    store.append("Order-1", new_events(1))
    store.delete_stream("Order-1")
    with pytest.raises(StreamNotFound) as raised:
        store.delete_stream("Order-1")
    assert raised.value.stream == "Order-1"


@pytest.mark.parametrize(
    ("expected", "actual"),
    [(NO_STREAM, 2), (1, 2), (3, 2)],
    ids=["no-stream", "behind", "ahead"],
)
def test_delete_checks_the_expected_version(
    store: EventStore, expected: ExpectedVersion, actual: int
) -> None:
    store.append("Order-1", new_events(2))

    with pytest.raises(WrongExpectedVersion) as raised:
        store.delete_stream("Order-1", expected)

    assert (raised.value.stream, raised.value.expected, raised.value.actual) == (
        "Order-1",
        expected,
        actual,
    )
    assert versions(store.read_stream("Order-1")) == [1, 2]


def test_appending_to_a_deleted_stream_revives_it_and_numbering_continues(
    store: EventStore,
) -> None:
    store.append("Order-1", new_events(2))
    store.delete_stream("Order-1", STREAM_EXISTS)

    with pytest.raises(WrongExpectedVersion) as raised:
        store.append("Order-1", new_events(1), STREAM_EXISTS)
    assert raised.value.actual is None
    with pytest.raises(WrongExpectedVersion):
        store.append("Order-1", new_events(1), 2)
    result = store.append("Order-1", new_events(2), NO_STREAM)

    assert result.version == 4
    assert versions(store.read_stream("Order-1")) == [3, 4]
    assert versions(store.read_stream("Order-1", from_version=1)) == [3, 4]
    assert versions(store.read_stream("Order-1", backwards=True)) == [4, 3]
    assert store.read_stream("Order-1", backwards=True, from_version=2) == []
    assert store.stream_version("Order-1") == 4
    assert store.list_streams() == [StreamInfo("Order-1", 4, 3, False)]
    assert versions(store.read_all()) == [1, 2, 3, 4]
    store.append("Order-1", new_events(1), 4)
    assert versions(store.read_stream("Order-1")) == [3, 4, 5]


def test_a_revived_stream_can_be_deleted_again(store: EventStore) -> None:
    store.append("Order-1", new_events(1))
    store.delete_stream("Order-1")
    store.append("Order-1", new_events(1), 0)
    store.delete_stream("Order-1", 2)

    assert store.read_stream("Order-1") == []
    assert store.list_streams(include_deleted=True) == [StreamInfo("Order-1", 2, 3, True)]


# Snapshots


def snapshot(stream: str, version: int, data: bytes = b"{}") -> Snapshot:
    return Snapshot(stream, version, "shape-1", data)


def test_a_snapshot_is_kept_per_stream_and_outside_all(store: EventStore) -> None:
    store.append("Order-1", new_events(3))
    store.append("Order-2", new_events(1))
    log = store.read_all()

    assert store.read_snapshot("Order-1") is None
    assert store.save_snapshot(snapshot("Order-1", 2, b'{"n":2}')) is True

    assert store.read_snapshot("Order-1") == snapshot("Order-1", 2, b'{"n":2}')
    assert store.read_snapshot("Order-2") is None
    assert store.read_all() == log
    assert [info.name for info in store.list_streams()] == ["Order-1", "Order-2"]


def test_a_later_snapshot_replaces_an_earlier_one_and_never_the_reverse(
    store: EventStore,
) -> None:
    store.append("Order-1", new_events(4))
    store.save_snapshot(snapshot("Order-1", 2))

    assert store.save_snapshot(snapshot("Order-1", 4, b'{"n":4}')) is True
    assert store.save_snapshot(snapshot("Order-1", 3)) is False
    assert store.read_snapshot("Order-1") == snapshot("Order-1", 4, b'{"n":4}')
    replaced = Snapshot("Order-1", 4, "shape-2", b'{"m":4}')
    assert store.save_snapshot(replaced) is True
    assert store.read_snapshot("Order-1") == replaced


@pytest.mark.parametrize(
    ("stream", "version"),
    [("Order-404", 1), ("Order-1", 3), ("Order-1", 0)],
    ids=["missing-stream", "beyond-the-stream", "version-0"],
)
def test_a_snapshot_of_a_version_the_stream_lacks_is_not_kept(
    store: EventStore, stream: str, version: int
) -> None:
    store.append("Order-1", new_events(2))

    assert store.save_snapshot(snapshot(stream, version)) is False
    assert store.read_snapshot(stream) is None


def test_a_deleted_stream_loses_its_snapshot_even_once_revived(store: EventStore) -> None:
    store.append("Order-1", new_events(3))
    store.save_snapshot(snapshot("Order-1", 3))

    store.delete_stream("Order-1")
    assert store.read_snapshot("Order-1") is None
    assert store.save_snapshot(snapshot("Order-1", 3)) is False

    store.append("Order-1", new_events(2), NO_STREAM)
    assert store.read_snapshot("Order-1") is None
    assert store.save_snapshot(snapshot("Order-1", 3)) is False
    assert store.save_snapshot(snapshot("Order-1", 5)) is True
    assert store.read_snapshot("Order-1") == snapshot("Order-1", 5)


def test_a_closed_store_is_unavailable(store: EventStore) -> None:
    store.append("Order-1", new_events(1))
    store.close()

    with pytest.raises(StoreUnavailable):
        store.append("Order-1", new_events(1))
    with pytest.raises(StoreUnavailable):
        store.read_all()


# Concurrency


def test_racing_writers_on_one_stream_get_contiguous_versions(store: EventStore) -> None:
    writers = 16
    store.append("Order-1", new_events(1), NO_STREAM)
    batches = [new_events(1) for _ in range(writers)]
    start = threading.Barrier(writers)
    first_round: list[AppendResult | WrongExpectedVersion | None] = [None] * writers

    turns = [threading.Event() for _ in range(writers)]

    def write(index: int) -> None:
        start.wait()
        try:
            first_round[index] = store.append("Order-1", batches[index], 1)
        except WrongExpectedVersion as exc:
            first_round[index] = exc
        start.wait()  # every writer knows how the race ended
        losers = [i for i, r in enumerate(first_round) if isinstance(r, WrongExpectedVersion)]
        if index not in losers:
            return
        # The losers retry one after the other, each at the version the previous one left.
        rank = losers.index(index)
        if rank > 0:
            assert turns[rank].wait(PATIENCE), "the previous loser never appended"
        store.append("Order-1", batches[index], 2 + rank)
        if rank + 1 < writers:
            turns[rank + 1].set()

    run_threads(writers, write)

    won = [r for r in first_round if isinstance(r, AppendResult)]
    lost = [r for r in first_round if isinstance(r, WrongExpectedVersion)]
    assert len(won) == 1
    assert won[0].version == 2
    assert len(lost) == writers - 1
    assert all((e.stream, e.expected, e.actual) == ("Order-1", 1, 2) for e in lost)
    records = store.read_stream("Order-1")
    assert versions(records) == list(range(1, writers + 2))
    assert sorted(ids(records)[1:]) == sorted(batch[0].event_id for batch in batches)
    assert_increasing([r.position for r in records])


def tail(store: EventStore, count: int, seen: list[RecordedEvent], limit: int = 5) -> None:
    """Read `$all` from the last position seen, as a subscriber does, until `count` arrived."""
    deadline = time.monotonic() + PATIENCE
    after = 0
    while len(seen) < count:
        assert time.monotonic() < deadline, f"the reader saw {len(seen)} of {count} events"
        page = store.read_all(after=after, limit=limit)
        seen.extend(page)
        if page:
            after = page[-1].position
        else:
            time.sleep(0.002)


def test_a_reader_tailing_all_sees_every_event_once_in_order(store: EventStore) -> None:
    writers, commits = 8, 12
    seen: list[RecordedEvent] = []
    reader = Background(tail, store, writers * commits * 2, seen)
    reader.start()

    def write(index: int) -> None:
        for version in range(0, commits * 2, 2):
            store.append(f"Writer-{index}", new_events(2), version)

    run_threads(writers, write)
    reader.finish()

    log = store.read_all()
    assert len(log) == writers * commits * 2
    assert seen == log
    assert len(set(ids(seen))) == len(seen)
    assert_increasing([r.position for r in seen])
    for index in range(writers):
        mine = [r for r in seen if r.stream == f"Writer-{index}"]
        assert versions(mine) == list(range(1, commits * 2 + 1))


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_reader_never_skips_a_transaction_held_open(store: EventStore, outcome: str) -> None:
    store.append("Seed-1", new_events(1))
    writers = 4
    held = new_events(2)
    expected = 1 + writers + (len(held) if outcome == "commit" else 0)
    seen: list[RecordedEvent] = []
    reader = Background(tail, store, expected, seen, 2)
    later = [Background(store.append, f"Later-{i}", new_events(1)) for i in range(writers)]

    with store.transaction() as tx:
        tx.append("Held-1", held, NO_STREAM)
        # Later transactions commit meanwhile, where the backend lets them.
        for thread in later:
            thread.start()
        reader.start()
        time.sleep(0.2)
        assert not set(ids(seen)) & set(ids_of(held))
        if outcome == "rollback":
            tx.rollback()

    for thread in later:
        thread.finish()
    reader.finish()
    log = store.read_all()
    assert seen == log
    assert len(log) == expected
    assert_increasing([r.position for r in seen])
    assert [r.stream for r in log].count("Held-1") == (2 if outcome == "commit" else 0)
    assert {r.stream for r in log} >= {f"Later-{i}" for i in range(writers)}


def test_application_statements_take_one_parameter_style_and_commit_with_the_events(
    store: EventStore,
) -> None:
    table = f"read_model_{next(_counter)}_{uuid.uuid4().hex[:8]}"
    with store.transaction() as tx:
        tx.execute(f"CREATE TABLE {table} (name TEXT PRIMARY KEY, note TEXT, n INTEGER)")
        # A '?' and a '%' inside quotes are text, not placeholders.
        tx.execute(f"INSERT INTO {table} VALUES ('literal?', '100%', 0)")
        tx.execute(f"INSERT INTO {table} (name, note, n) VALUES (?, ?, ?)", ("a", "50%", 1))
        tx.append("Order-1", new_events(1))
    with store.transaction() as tx:
        rows = tx.query(f"SELECT name, note, n FROM {table} WHERE n >= ? ORDER BY n", (0,))
    assert rows == [("literal?", "100%", 0), ("a", "50%", 1)]


def test_application_statements_roll_back_with_the_transaction(store: EventStore) -> None:
    table = f"read_model_{next(_counter)}_{uuid.uuid4().hex[:8]}"
    with store.transaction() as tx:
        tx.execute(f"CREATE TABLE {table} (name TEXT PRIMARY KEY)")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        tx.execute(f"INSERT INTO {table} (name) VALUES (?)", ("kept?",))
        tx.append("Order-1", new_events(1))
        raise Boom
    with store.transaction() as tx:
        assert tx.query(f"SELECT name FROM {table}") == []
    assert store.stream_version("Order-1") is None
