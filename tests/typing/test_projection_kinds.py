"""Projections as mypy sees them: each runner and unit of work takes its own kind, never the other.

A `Projection` is generic in the transaction its handlers, `setup` and
`reset` take: a plain one takes a `ReadModelTransaction` (blocking), a
`Projection[AsyncReadModelTransaction]` the async one, and a
`Projection[object]` either. `@handles` checks a handler's transaction
against its projection's kind. The blocking runner's refusal of async code
at registration stays, for code mypy does not see (tests/projections/test_blocking.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.typing.checking import mypy_errors

PRELUDE = """
from dataclasses import dataclass
from pathlib import Path
from tidings import (
    AsyncMemoryStore, AsyncProjectionRunner, AsyncReadModelTransaction, AsyncSQLiteStore,
    AsyncUnitOfWork, AsyncWorker, Envelope, Event, MemoryStore, Projection, ProjectionRunner,
    ReadModelTransaction, Router, SQLiteStore, UnitOfWork, Worker, durable_handlers, handles,
)

@dataclass(frozen=True)
class Placed(Event):
    day: str

class Count(Projection):
    name = "count"

    def setup(self, tx: ReadModelTransaction) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS count (day TEXT PRIMARY KEY, n INTEGER)")

    def reset(self, tx: ReadModelTransaction) -> None:
        tx.execute("DELETE FROM count")

    @handles
    def placed(self, event: Placed, envelope: Envelope[Placed], tx: ReadModelTransaction) -> None:
        tx.execute("INSERT INTO count VALUES (?, 1)", (event.day,))

class AsyncCount(Projection[AsyncReadModelTransaction]):
    name = "async_count"

    async def setup(self, tx: AsyncReadModelTransaction) -> None:
        await tx.execute("CREATE TABLE IF NOT EXISTS count (day TEXT PRIMARY KEY, n INTEGER)")

    async def reset(self, tx: AsyncReadModelTransaction) -> None:
        await tx.execute("DELETE FROM count")

    @handles
    async def placed(
        self, event: Placed, envelope: Envelope[Placed], tx: AsyncReadModelTransaction
    ) -> None:
        rows = await tx.query("SELECT n FROM count WHERE day = ?", (event.day,))
        if not rows:
            await tx.execute("INSERT INTO count VALUES (?, 1)", (event.day,))

    @handles
    def any_event(
        self, event: Event, envelope: Envelope[Event], tx: AsyncReadModelTransaction
    ) -> None:
        pass

path = Path("events.db")
"""


def test_each_runner_and_unit_of_work_accepts_its_own_kind_of_projection(tmp_path: Path) -> None:
    source = (
        PRELUDE
        + """
class Seen(Projection[object]):
    name = "seen"
    transactional = False

    def reset(self, tx: object) -> None: ...

    @handles
    def placed(self, event: Placed, envelope: Envelope[Placed], tx: None) -> None: ...

class Either(Projection[object]):
    name = "either"

    @handles
    def placed(self, event: Placed, envelope: Envelope[Placed], tx: object) -> None: ...

class Outside(Projection):
    name = "outside"
    transactional = False

    @handles
    def placed(self, event: Placed, envelope: Envelope[Placed], tx: None) -> None: ...

router = Router()
ProjectionRunner(SQLiteStore(path), [Count(), Seen(), Either(), Outside()])
ProjectionRunner(MemoryStore(), durable_handlers(router))
UnitOfWork(MemoryStore(), inline=[Count(), Either()])
Worker(MemoryStore(), projections=[Count(), Seen()])
AsyncProjectionRunner(AsyncSQLiteStore(path), [AsyncCount(), Seen(), Either()])
AsyncProjectionRunner(AsyncMemoryStore(), durable_handlers(router))
AsyncUnitOfWork(AsyncMemoryStore(), inline=[AsyncCount(), Either()])
AsyncWorker(AsyncMemoryStore(), projections=[AsyncCount(), Seen()])
"""
    )
    assert mypy_errors(source, tmp_path) == []


@pytest.mark.parametrize(
    ("mismatch", "refusal"),
    [
        pytest.param(
            "ProjectionRunner(SQLiteStore(path), [AsyncCount()])",
            'List item 0 has incompatible type "AsyncCount"; '
            'expected "Projection[ReadModelTransaction]"',
            id="async-projection-to-the-blocking-runner",
        ),
        pytest.param(
            "AsyncProjectionRunner(AsyncSQLiteStore(path), [Count()])",
            'List item 0 has incompatible type "Count"; '
            'expected "Projection[AsyncReadModelTransaction]"',
            id="blocking-projection-to-the-async-runner",
        ),
        pytest.param(
            "UnitOfWork(MemoryStore(), inline=[AsyncCount()])",
            'List item 0 has incompatible type "AsyncCount"',
            id="async-projection-inline-in-a-blocking-unit-of-work",
        ),
        pytest.param(
            "AsyncUnitOfWork(AsyncMemoryStore(), inline=[Count()])",
            'List item 0 has incompatible type "Count"',
            id="blocking-projection-inline-in-an-async-unit-of-work",
        ),
        pytest.param(
            "from sqlalchemy.orm import sessionmaker\n"
            "from tidings.integrations.sqlalchemy import SqlAlchemyUnitOfWork\n"
            "SqlAlchemyUnitOfWork(sessionmaker(), SQLiteStore(path), inline=[AsyncCount()])",
            'List item 0 has incompatible type "AsyncCount"',
            id="async-projection-inline-in-a-sqlalchemy-unit-of-work",
        ),
        pytest.param(
            "Worker(MemoryStore(), projections=[AsyncCount()])",
            'List item 0 has incompatible type "AsyncCount"',
            id="async-projection-to-the-blocking-worker",
        ),
        pytest.param(
            "class Wrong(Projection):\n"
            "    name = 'wrong'\n"
            "    @handles\n"
            "    async def placed(\n"
            "        self, event: Placed, envelope: Envelope[Placed],\n"
            "        tx: AsyncReadModelTransaction,\n"
            "    ) -> None: ...",
            'Argument 1 to "handles" has incompatible type',
            id="async-transaction-in-a-blocking-projection-s-handler",
        ),
        pytest.param(
            "class Wrong(Projection[AsyncReadModelTransaction]):\n"
            "    name = 'wrong'\n"
            "    @handles\n"
            "    def placed(\n"
            "        self, event: Placed, envelope: Envelope[Placed], tx: ReadModelTransaction\n"
            "    ) -> None: ...",
            'Argument 1 to "handles" has incompatible type',
            id="blocking-transaction-in-an-async-projection-s-handler",
        ),
        pytest.param(
            "class Wrong(Projection):\n"
            "    name = 'wrong'\n"
            "    async def setup(self, tx: AsyncReadModelTransaction) -> None: ...",
            'Argument 1 of "setup" is incompatible with supertype',
            id="async-setup-in-a-blocking-projection",
        ),
        pytest.param(
            "class Wrong(Projection):\n"
            "    name = 'wrong'\n"
            "    @handles\n"
            "    def placed(\n"
            "        self, event: Placed, envelope: Envelope[Placed], tx: ReadModelTransaction\n"
            "    ) -> None:\n"
            "        tx.commit()",
            '"ReadModelTransaction" has no attribute "commit"',
            id="a-handler-ending-the-runner-s-transaction",
        ),
        pytest.param(
            "class Wrong(Projection[AsyncReadModelTransaction]):\n"
            "    name = 'wrong'\n"
            "    @handles\n"
            "    async def placed(\n"
            "        self, event: Placed, envelope: Envelope[Placed],\n"
            "        tx: AsyncReadModelTransaction,\n"
            "    ) -> None:\n"
            "        tx.execute('DELETE FROM count')",
            'Value of type "Coroutine[Any, Any, None]" must be used',
            id="an-async-handler-s-statement-not-awaited",
        ),
        pytest.param(
            "def handle(projection: Projection) -> None:\n"
            "    for handler in projection.handlers().values():\n"
            "        handler(Placed('x'), Envelope.new(Placed('x')), None)",
            'Argument 3 has incompatible type "None"; expected "ReadModelTransaction"',
            id="a-blocking-projection-s-handlers-typed-by-its-transaction",
        ),
    ],
)
def test_a_projection_of_the_other_kind_is_refused(
    mismatch: str, refusal: str, tmp_path: Path
) -> None:
    errors = mypy_errors(PRELUDE + mismatch + "\n", tmp_path)
    assert errors, "mypy accepted it"
    assert any(refusal in error for error in errors), errors


def test_an_async_handler_in_a_plain_projection_is_refused(tmp_path: Path) -> None:
    # Only names older than the typed projections: mypy took this, and the blocking runner
    # refused it only when it was made.
    source = """
from dataclasses import dataclass
from tidings import (
    AsyncStoreTransaction, Envelope, Event, Projection, ProjectionRunner, SQLiteStore, handles,
)

@dataclass(frozen=True)
class Placed(Event):
    day: str

class Count(Projection):
    name = "count"

    @handles
    async def placed(
        self, event: Placed, envelope: Envelope[Placed], tx: AsyncStoreTransaction
    ) -> None:
        await tx.execute("INSERT INTO count VALUES (?, 1)", (event.day,))

ProjectionRunner(SQLiteStore("events.db"), [Count()])
"""
    errors = mypy_errors(source, tmp_path)
    assert any('Argument 1 to "handles" has incompatible type' in error for error in errors), errors
