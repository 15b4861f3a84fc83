"""Sync and async stores as mypy sees them: each component takes its own kind, never the other.

The components above the store (runners, subscriptions, sagas, schedulers,
dead letters, workers) take the store protocols (`EventStore`,
`ReadModelStore`, `EventReader`, `Transactional` and their async twins), so
an async store given to a blocking component, or the reverse, is a type
error before anything runs.

Projections are told apart the same way, by the transaction they take
(see test_projection_kinds.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.typing.checking import mypy_errors

PRELUDE = """
from pathlib import Path
from tidings import (
    AsyncEventStore, AsyncMemoryStore, AsyncProjectionRunner, AsyncReadModelStore,
    AsyncSagaRunner, AsyncScheduler, AsyncSQLDeadLetters, AsyncSQLiteStore,
    AsyncStoreTransaction, AsyncSubscription, AsyncWorker, DeadLetter, EventStore,
    MemoryStore, ProjectionRunner, ReadModelStore, SagaRunner, Scheduler, SQLDeadLetters,
    SQLiteStore, StoreTransaction, Subscription, Worker,
)

path = Path("events.db")
"""


def test_each_component_accepts_its_own_kind_of_store(tmp_path: Path) -> None:
    source = (
        PRELUDE
        + """
def blocking(store: EventStore, letter: DeadLetter) -> None:
    ProjectionRunner(store, [])
    Subscription(store)
    SagaRunner(store, [])
    Worker(store)
    with store.transaction() as tx:
        SQLDeadLetters(store).add(letter, tx=tx)
        Scheduler(store).cancel(letter.id, tx=tx)

async def asynchronous(store: AsyncEventStore, letter: DeadLetter) -> None:
    AsyncProjectionRunner(store, [])
    AsyncSubscription(store)
    AsyncSagaRunner(store, [])
    AsyncWorker(store)
    async with store.transaction() as tx:
        await AsyncSQLDeadLetters(store).add(letter, tx=tx)
        await AsyncScheduler(store).cancel(letter.id, tx=tx)

def read_models(store: ReadModelStore, async_store: AsyncReadModelStore) -> None:
    ProjectionRunner(store, [])
    AsyncProjectionRunner(async_store, [])

def swap(tx: StoreTransaction) -> None:
    tx.execute("DELETE FROM old")

async def swap_async(tx: AsyncStoreTransaction) -> None:
    await tx.execute("DELETE FROM old")

ProjectionRunner(SQLiteStore(path), [])
ProjectionRunner(MemoryStore(), [])
AsyncProjectionRunner(AsyncSQLiteStore(path), [])
AsyncProjectionRunner(AsyncMemoryStore(), [])
Subscription(SQLiteStore(path))
AsyncSubscription(AsyncSQLiteStore(path))
"""
    )
    assert mypy_errors(source, tmp_path) == []


@pytest.mark.parametrize(
    ("mismatch", "refusal"),
    [
        pytest.param(
            "ProjectionRunner(AsyncSQLiteStore(path), [])",
            'Argument 1 to "ProjectionRunner" has incompatible type "AsyncSQLiteStore"',
            id="async-sqlite-store-to-the-blocking-runner",
        ),
        pytest.param(
            "def run(store: AsyncEventStore) -> None:\n    ProjectionRunner(store, [])",
            'Argument 1 to "ProjectionRunner" has incompatible type "AsyncEventStore"',
            id="any-async-store-to-the-blocking-runner",
        ),
        pytest.param(
            "AsyncProjectionRunner(SQLiteStore(path), [])",
            'Argument 1 to "AsyncProjectionRunner" has incompatible type "SQLiteStore"',
            id="sqlite-store-to-the-async-runner",
        ),
        pytest.param(
            "AsyncProjectionRunner(MemoryStore(), [])",
            'Argument 1 to "AsyncProjectionRunner" has incompatible type "MemoryStore"',
            id="memory-store-to-the-async-runner",
        ),
        pytest.param(
            "Subscription(AsyncMemoryStore())",
            'Argument 1 to "Subscription" has incompatible type "AsyncMemoryStore"',
            id="async-store-to-a-blocking-subscription",
        ),
        pytest.param(
            "SagaRunner(AsyncSQLiteStore(path), [])",
            'Argument 1 to "SagaRunner" has incompatible type "AsyncSQLiteStore"',
            id="async-store-to-the-blocking-saga-runner",
        ),
        pytest.param(
            "SQLDeadLetters(AsyncSQLiteStore(path))",
            'Argument 1 to "SQLDeadLetters" has incompatible type "AsyncSQLiteStore"',
            id="async-store-to-blocking-dead-letters",
        ),
        pytest.param(
            "Scheduler(AsyncSQLiteStore(path))",
            'Argument 1 to "Scheduler" has incompatible type "AsyncSQLiteStore"',
            id="async-store-to-the-blocking-scheduler",
        ),
        pytest.param(
            "AsyncWorker(MemoryStore())",
            'Argument 1 to "AsyncWorker" has incompatible type "MemoryStore"',
            id="blocking-store-to-the-async-worker",
        ),
        pytest.param(
            "async def add(letter: DeadLetter) -> None:\n"
            "    with SQLiteStore(path).transaction() as tx:\n"
            "        await AsyncSQLDeadLetters(AsyncSQLiteStore(path)).add(letter, tx=tx)",
            'Argument "tx" to "add" of "AsyncSQLDeadLetters" has incompatible type',
            id="blocking-transaction-to-async-dead-letters",
        ),
        pytest.param(
            "def swap(tx: StoreTransaction) -> None: ...\n\n"
            "async def rebuild(runner: AsyncProjectionRunner) -> None:\n"
            "    await runner.replace(next(iter(runner.projections.values())), swap)",
            'expected "Callable[[AsyncStoreTransaction], object]"',
            id="blocking-swap-to-the-async-runner",
        ),
    ],
)
def test_a_store_of_the_other_kind_is_refused(mismatch: str, refusal: str, tmp_path: Path) -> None:
    errors = mypy_errors(PRELUDE + mismatch + "\n", tmp_path)
    assert errors, "mypy accepted it"
    assert any(refusal in error for error in errors), errors
