import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tidings import (
    Aggregate,
    AsyncMemoryStore,
    AsyncUnitOfWork,
    Event,
    EventSourced,
    MemoryStore,
    Repository,
    UnitOfWork,
    UnitOfWorkStateError,
    WrongExpectedVersion,
    applies,
)


@dataclass(frozen=True)
class Deposited(Event, type_name="uow.Deposited"):
    amount: int


class Wallet(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    def deposit(self, amount: int) -> None:
        self.record(Deposited(amount))

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.total += event.amount


class Shelf(Aggregate):
    def __init__(self, shelf_id: str) -> None:
        self.id = shelf_id
        self.books: list[int] = []

    def put(self, amount: int) -> None:
        self.books.append(amount)
        self.record(Deposited(amount))


class Shelves(Repository[Shelf]):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, Shelf] = {}

    def _add(self, aggregate: Shelf) -> None:
        self.rows[aggregate.id] = aggregate

    def _get(self, aggregate_id: Any) -> Shelf | None:
        return self.rows.get(aggregate_id)


class LibraryUnitOfWork(UnitOfWork):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.shelves = Shelves()


def test_commit_appends_the_new_events_of_every_tracked_aggregate() -> None:
    store = MemoryStore()
    uow = LibraryUnitOfWork(store)
    with uow:
        wallet = Wallet("w1")
        wallet.deposit(5)
        uow.repository(Wallet).add(wallet)
        uow.shelves.add(Shelf("s1"))
        shelf = uow.shelves.get("s1")
        assert shelf is not None
        shelf.put(7)
        uow.commit()
    assert [(r.stream, r.version) for r in store.read_all()] == [("Wallet-w1", 1), ("Shelf-s1", 1)]
    new = uow.collect_new_events()
    assert [e.message for e in new] == [Deposited(5), Deposited(7)]
    assert [e.position for e in new] == [1, 2]
    assert new[0].correlation_id == new[1].correlation_id
    assert uow.collect_new_events() == []


def test_leaving_without_commit_rolls_back() -> None:
    store = MemoryStore()
    uow = UnitOfWork(store)
    with uow:
        wallet = Wallet("w1")
        wallet.deposit(5)
        uow.repository(Wallet).add(wallet)
    assert store.read_all() == []
    assert uow.collect_new_events() == []


def test_an_exception_rolls_back_and_propagates() -> None:
    store = MemoryStore()
    uow = UnitOfWork(store)
    with pytest.raises(ZeroDivisionError), uow:
        wallet = Wallet("w1")
        wallet.deposit(5)
        uow.repository(Wallet).add(wallet)
        _ = 1 / 0
    assert store.read_all() == []


def test_an_event_sourced_aggregate_is_loaded_changed_and_saved_with_its_version() -> None:
    store = MemoryStore()
    uow = UnitOfWork(store)
    with uow:
        wallet = Wallet("w1")
        wallet.deposit(5)
        uow.repository(Wallet).add(wallet)
        uow.commit()
    with uow:
        loaded = uow.repository(Wallet).get("w1")
        assert loaded is not None and loaded.total == 5 and loaded.version == 1
        loaded.deposit(3)
        uow.commit()
    assert store.stream_version("Wallet-w1") == 2
    with uow:
        assert uow.repository(Wallet).get("nobody") is None


def test_concurrent_changes_to_one_aggregate_conflict() -> None:
    store = MemoryStore()
    first, second = UnitOfWork(store), UnitOfWork(store)
    with first:
        wallet = Wallet("w1")
        wallet.deposit(1)
        first.repository(Wallet).add(wallet)
        first.commit()
    # Both load version 1; the second to commit loses.
    with first:
        a = first.repository(Wallet).get("w1")
    with second:
        b = second.repository(Wallet).get("w1")
    assert a is not None and b is not None
    with first:
        first.repository(Wallet).add(a)
        a.deposit(10)
        first.commit()
    with pytest.raises(WrongExpectedVersion) as conflict, second:
        second.repository(Wallet).add(b)
        b.deposit(20)
        second.commit()
    assert conflict.value.stream == "Wallet-w1"
    assert conflict.value.expected == 1
    assert conflict.value.actual == 2
    assert [r.version for r in store.read_stream("Wallet-w1")] == [1, 2]


def test_a_block_commits_once_and_the_unit_must_be_open() -> None:
    uow = UnitOfWork(MemoryStore())
    with pytest.raises(UnitOfWorkStateError, match="not open"):
        uow.commit()
    with uow:
        uow.commit()
        with pytest.raises(UnitOfWorkStateError, match="already committed"):
            uow.commit()
    with uow, pytest.raises(UnitOfWorkStateError, match=r"already open.*PerCall"), uow:
        pass


def test_async_unit_of_work_has_the_same_behaviour() -> None:
    store = AsyncMemoryStore()
    uow = AsyncUnitOfWork(store)

    async def scenario() -> None:
        async with uow:
            wallet = Wallet("w1")
            wallet.deposit(5)
            await uow.repository(Wallet).add(wallet)
            await uow.commit()
        async with uow:
            loaded = await uow.repository(Wallet).get("w1")
            assert loaded is not None
            loaded.deposit(1)
        assert await store.stream_version("Wallet-w1") == 1

    asyncio.run(scenario())
    assert [e.message for e in uow.collect_new_events()] == [Deposited(5)]
