"""Catching up, the runner reads the next page while a batch is applied: a page it must not use.

A full page is likely followed by another, so on PostgreSQL (a store that
says `read_ahead`) that one is read while the batch's statements run. It
starts where the batch ends; a batch that stops part-way (an event retried
alone, or dead-lettered) or is fenced leaves the checkpoint elsewhere, and
the page read ahead must then be dropped: the events after the checkpoint
are read again, none skipped, none applied twice (the ledger's entries have
the event id as primary key, so a second booking would fail).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections.ledger import Backend, Deposited, Ledger, backend, deposit
from tests.runner_options import RunnerOptions
from tests.store.readable import readable, wait_readable
from tidings import AsyncReadModelTransaction, Envelope
from tidings.projections import (
    AsyncProjectionRunner,
    OnFailure,
    Projection,
    ProjectionRunner,
    ProjectionState,
    handles,
)
from tidings.retry import Retry

FAST: RunnerOptions = {"poll_interval": 0.05, "lease": 2.0, "retry_waits": False}
BATCH = 10
EVENTS = 45
FAILING = 4  # the fifth event: in the first batch, which is full, so the next was read ahead


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Backend]:
    with backend("postgres", tmp_path) as found:
        yield found


class FailsUntilRetried(Ledger):
    """The ledger, whose handler fails on account `flaky` until the event is retried alone.

    It fails twice: in the batch, then in the batch handled again one event
    at a time, which commits the events before it; the retry of the event
    alone then succeeds, and the checkpoint stops there, short of the batch's end.
    """

    retry = Retry(attempts=2, first_delay=0)

    def __init__(self, prefix: str, name: str) -> None:
        super().__init__(prefix, name)
        self.failures = 0

    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: Any) -> Any:
        if event.account == "flaky" and self.failures < 2:
            self.failures += 1
            raise RuntimeError("not this time")
        return super().deposited(event, envelope, tx)


class FailsAlways(Ledger):
    """The ledger, whose handler always fails on account `poison`, then moves past it."""

    retry = Retry(attempts=2, first_delay=0)
    on_failure = OnFailure.DEAD_LETTER

    @handles
    def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: Any) -> Any:
        if event.account == "poison":
            raise RuntimeError("never")
        return super().deposited(event, envelope, tx)


def _accounts(odd: str) -> list[str]:
    return [odd if i == FAILING else f"a{i % 3}" for i in range(EVENTS)]


def _expected(accounts: list[str], skipped: str | None) -> dict[str, tuple[int, int]]:
    model: dict[str, tuple[int, int]] = {}
    for account in accounts:
        if account != skipped:
            balance, entries = model.get(account, (0, 0))
            model[account] = (balance + 1, entries + 1)
    return model


@pytest.mark.parametrize("outcome", ["retried", "dead-lettered"])
def test_a_batch_stopping_part_way_drops_the_page_read_ahead(env: Backend, outcome: str) -> None:
    store = env.open(False)
    odd = "flaky" if outcome == "retried" else "poison"
    kind = FailsUntilRetried if outcome == "retried" else FailsAlways
    projection = kind(env.qualify(f"ahead_{uuid.uuid4().hex[:6]}"), "ahead")
    accounts = _accounts(odd)
    appended = store.append("Account-1", [deposit(account) for account in accounts])
    wait_readable(store, appended.positions[-1])
    runner = ProjectionRunner(store, [projection], batch_size=BATCH, **FAST)
    with runner.running():
        runner.wait_for("ahead", appended.positions[-1], timeout=30)
    assert env.read(projection) == _expected(accounts, None if outcome == "retried" else odd)
    letters = runner.letters_of("ahead")
    assert [letter.envelope.position for letter in letters] == (
        [] if outcome == "retried" else [appended.positions[FAILING]]
    )
    store.close()


@pytest.mark.parametrize("outcome", ["retried", "dead-lettered"])
def test_the_async_runner_drops_the_page_read_ahead_too(env: Backend, outcome: str) -> None:
    odd = "flaky" if outcome == "retried" else "poison"
    kind = FailsUntilRetried if outcome == "retried" else FailsAlways
    projection = kind(env.qualify(f"ahead_{uuid.uuid4().hex[:6]}"), "ahead")
    accounts = _accounts(odd)

    async def main() -> None:
        store = env.open(True)
        appended = await store.append("Account-1", [deposit(account) for account in accounts])
        await readable(store, appended.positions[-1])
        runner = AsyncProjectionRunner(store, [projection], batch_size=BATCH, **FAST)
        async with runner.running():
            await runner.wait_for("ahead", appended.positions[-1], timeout=30)
        letters = await runner.letters_of("ahead")
        assert [letter.envelope.position for letter in letters] == (
            [] if outcome == "retried" else [appended.positions[FAILING]]
        )
        await store.aclose()

    asyncio.run(main())
    assert env.read(projection) == _expected(accounts, None if outcome == "retried" else odd)


class PausesItself(Projection[AsyncReadModelTransaction]):
    """Remembers the events it sees; at the fifth, pauses itself through another runner.

    It is not transactional, so the pause commits before the batch's
    checkpoint is written: that write, while the next page is read ahead,
    is the one fenced.
    """

    name = "pauser"
    transactional = False

    def __init__(self) -> None:
        self.seen: list[uuid.UUID] = []
        self.other: AsyncProjectionRunner | None = None
        self.paused = asyncio.Event()

    @handles
    async def deposited(self, event: Deposited, envelope: Envelope[Deposited], tx: None) -> None:
        self.seen.append(envelope.message_id)
        if len(self.seen) == FAILING + 1 and self.other is not None:
            await self.other.pause("pauser")
            self.paused.set()


def test_a_batch_fenced_while_the_next_page_is_read_starts_over_from_its_checkpoint(
    env: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tidings.projections")
    projection = PausesItself()

    async def main() -> None:
        store = env.open(True)
        appended = await store.append("Account-1", [deposit(f"a{i}") for i in range(EVENTS)])
        await readable(store, appended.positions[-1])
        ids = {event.event_id for event in await store.read_all()}
        runner = AsyncProjectionRunner(store, [projection], batch_size=BATCH, **FAST)
        projection.other = AsyncProjectionRunner(store, [PausesItself()], **FAST)
        async with runner.running():
            await asyncio.wait_for(projection.paused.wait(), 30)
            [status] = await runner.status()
            # The first batch's checkpoint was refused: nothing passed, nothing read ahead used.
            assert (status.state, status.position) == (ProjectionState.PAUSED, 0)
            projection.other = None
            await runner.resume("pauser")
            await runner.wait_for("pauser", appended.positions[-1], timeout=30)
        await store.aclose()
        # The first batch's events are seen again (at least once), every other once.
        assert set(projection.seen) == ids
        assert len(projection.seen) == EVENTS + BATCH

    asyncio.run(main())
    assert "runner failed" not in caplog.text
