"""Snapshots of event-sourced aggregates: taken every N events, loaded instead of a full replay."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import anyio
import msgspec
import pytest

from tidings import (
    AsyncUnitOfWork,
    Event,
    EventDecodeError,
    EventSourced,
    MemoryStore,
    UnitOfWork,
    applies,
)
from tidings.snapshots import SnapshotCodec, snapshot_codec
from tidings.store import (
    AsyncSQLiteStore,
    EventStore,
    NewEvent,
    Snapshot,
    SQLiteStore,
    StreamState,
)


@dataclass(frozen=True)
class Counted(Event, type_name="snapshots.Counted"):
    amount: int


class Tally(EventSourced):
    snapshot_every: ClassVar[int | None] = 3
    total: int
    count: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0
        self.count = 0

    def add(self, amount: int) -> None:
        self.record(Counted(amount))

    @applies
    def _counted(self, event: Counted) -> None:
        self.total += event.amount
        self.count += 1


class Unsnapshotted(EventSourced):
    total: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    @applies
    def _counted(self, event: Counted) -> None:
        self.total += event.amount


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    opened: EventStore = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "e.db")
    )
    yield opened
    opened.close()


def add(store: EventStore, tally_id: str, *amounts: int) -> Tally:
    """Load (or create) a tally, add `amounts` and commit; the tally as committed."""
    uow = UnitOfWork(store)
    with uow:
        tallies = uow.repository(Tally)
        tally = tallies.get(tally_id)
        if tally is None:
            tally = Tally(tally_id)
            tallies.add(tally)
        for amount in amounts:
            tally.add(amount)
        uow.commit()
    return tally


def load(store: EventStore, tally_id: str) -> Tally | None:
    uow = UnitOfWork(store)
    with uow:
        return uow.repository(Tally).get(tally_id)


def forged(store: EventStore, tally: Tally, **state: Any) -> Snapshot:
    """A snapshot of the tally's shape with other state, to tell a snapshot load from a replay."""
    codec = snapshot_codec(Tally)
    assert codec is not None
    real = codec.take(tally)
    data = msgspec.json.decode(real.data)
    return Snapshot(real.stream, real.version, real.shape, msgspec.json.encode({**data, **state}))


def test_a_commit_that_passes_a_multiple_of_snapshot_every_saves_a_snapshot(
    store: EventStore,
) -> None:
    add(store, "t1", 1, 2)
    assert store.read_snapshot("Tally-t1") is None

    add(store, "t1", 3, 4)

    snapshot = store.read_snapshot("Tally-t1")
    assert snapshot is not None
    assert snapshot.version == 4
    assert msgspec.json.decode(snapshot.data) == {"total": 10, "count": 4}
    assert [r.type for r in store.read_all()] == ["snapshots.Counted"] * 4


def test_loading_starts_from_the_snapshot_and_replays_only_later_events(
    store: EventStore,
) -> None:
    tally = add(store, "t1", 1, 2, 3)
    assert store.save_snapshot(forged(store, tally, total=100))
    add(store, "t1", 5)

    loaded = load(store, "t1")

    assert loaded is not None
    assert (loaded.total, loaded.count, loaded.version) == (105, 4, 4)


@pytest.mark.parametrize("kind", ["other-shape", "undecodable"])
def test_a_snapshot_that_no_longer_fits_is_ignored_and_the_stream_replayed(
    store: EventStore, kind: str
) -> None:
    tally = add(store, "t1", 1, 2, 3)
    good = forged(store, tally, total=100)
    if kind == "other-shape":
        stale = Snapshot(good.stream, good.version, "0" * 16, good.data)
    else:
        stale = Snapshot(good.stream, good.version, good.shape, b'{"total": "many"}')
    assert store.save_snapshot(stale)
    add(store, "t1", 5)

    loaded = load(store, "t1")

    assert loaded is not None
    assert (loaded.total, loaded.count, loaded.version) == (11, 4, 4)


def test_the_shape_changes_with_the_state_fields() -> None:
    class Renamed(EventSourced):
        snapshot_every: ClassVar[int | None] = 3
        sum: int
        count: int

    class Retyped(EventSourced):
        snapshot_every: ClassVar[int | None] = 3
        total: float
        count: int

    shapes = {SnapshotCodec(cls).shape for cls in (Tally, Renamed, Retyped)}
    assert len(shapes) == 3


def test_a_revived_stream_loads_at_its_real_version_and_commits_on_from_it(
    store: EventStore,
) -> None:
    add(store, "t1", 1, 2)
    store.delete_stream("Tally-t1")
    assert load(store, "t1") is None
    revived = add(store, "t1", 10)
    assert revived.version == 3

    add(store, "t1", 20)
    add(store, "t1", 30, 40)

    loaded = load(store, "t1")
    assert loaded is not None
    assert (loaded.total, loaded.count, loaded.version) == (100, 4, 6)
    assert [r.version for r in store.read_stream("Tally-t1")] == [3, 4, 5, 6]
    snapshot = store.read_snapshot("Tally-t1")
    assert snapshot is not None
    assert snapshot.version == 6


def test_types_without_snapshot_every_never_snapshot(store: EventStore) -> None:
    uow = UnitOfWork(store)
    with uow:
        plain = Unsnapshotted("u1")
        for amount in range(10):
            plain.record(Counted(amount))
        uow.repository(Unsnapshotted).add(plain)
        uow.commit()

    assert store.read_snapshot("Unsnapshotted-u1") is None
    assert snapshot_codec(Unsnapshotted) is None


def test_a_snapshot_that_cannot_be_taken_is_logged_and_the_commit_stands(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Odd(EventSourced):
        snapshot_every: ClassVar[int | None] = 1
        things: Any

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.things = object()  # msgspec cannot encode it

        @applies
        def _counted(self, event: Counted) -> None:
            pass

    uow = UnitOfWork(store)
    with caplog.at_level(logging.ERROR), uow:
        odd = Odd("o1")
        odd.record(Counted(1))
        uow.repository(Odd).add(odd)
        uow.commit()

    assert store.stream_version("Odd-o1") == 1
    assert store.read_snapshot("Odd-o1") is None
    assert "cannot take a snapshot of Odd-o1" in caplog.text


@pytest.mark.parametrize("every", [0, -2, 2.5, True])
def test_snapshot_every_must_be_a_positive_count(every: object) -> None:
    class Bad(EventSourced):
        total: int

    Bad.snapshot_every = every  # type: ignore[assignment]
    with pytest.raises(TypeError, match="snapshot_every"):
        SnapshotCodec(Bad)


def test_an_undecodable_event_names_its_stream_version_and_type(store: EventStore) -> None:
    add(store, "t1", 1)
    store.append(
        "Tally-t1",
        [
            NewEvent(
                event_id=uuid.uuid4(),
                type="snapshots.Counted",
                schema_version=1,
                data=b'{"amount": "lots"}',
                correlation_id=uuid.uuid4(),
                causation_id=None,
                occurred_at=datetime.now(UTC),
            )
        ],
        StreamState.STREAM_EXISTS,
    )

    with pytest.raises(EventDecodeError) as raised:
        load(store, "t1")

    error = raised.value
    assert (error.stream, error.version, error.type_name) == ("Tally-t1", 2, "snapshots.Counted")
    assert "'Tally-t1' version 2" in str(error)


def test_the_async_unit_of_work_saves_and_loads_snapshots(tmp_path: Path) -> None:
    async def main() -> tuple[Tally | None, Snapshot | None]:
        store = AsyncSQLiteStore(tmp_path / "e.db")
        for amounts in [(1, 2), (3, 4), (5,)]:
            uow = AsyncUnitOfWork(store)
            async with uow:
                tallies = uow.repository(Tally)
                tally = await tallies.get("t1") or Tally("t1")
                await tallies.add(tally)
                for amount in amounts:
                    tally.add(amount)
                await uow.commit()
        snapshot = await store.read_snapshot("Tally-t1")
        uow = AsyncUnitOfWork(store)
        async with uow:
            loaded = await uow.repository(Tally).get("t1")
        await store.aclose()
        return loaded, snapshot

    loaded, snapshot = anyio.run(main)

    assert snapshot is not None
    assert snapshot.version == 4
    assert loaded is not None
    assert (loaded.total, loaded.count, loaded.version) == (15, 5, 5)
