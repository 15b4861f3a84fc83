"""A Router's event handlers run from the log: after a crash too, dead-lettered when failing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from tests.projections.ledger import Backend, Deposited, Noted, backend, deposit, note
from tests.runner_options import RunnerOptions
from tidings import Command, Envelope, Event, Retry, Router
from tidings.context import current_dispatch
from tidings.projections import AsyncProjectionRunner, ProjectionRunner
from tidings.projections.durable import durable_handlers

FAST: RunnerOptions = {"poll_interval": 0.05, "lease": 2.0, "retry_waits": False}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def routed(seen: dict[str, list[UUID]]) -> Router:
    router = Router()

    @router.handler
    def on_deposit(
        event: Deposited, envelope: Envelope[Deposited], seen: dict[str, list[UUID]]
    ) -> None:
        assert current_dispatch() is not None
        seen.setdefault("deposit", []).append(envelope.message_id)

    @router.handler(retry=Retry(attempts=2, first_delay=0))
    def failing(event: Noted) -> None:
        raise RuntimeError(f"cannot take note {event.text!r}")

    @router.handler
    def everything(event: Event, envelope: Envelope[Event], seen: dict[str, list[UUID]]) -> None:
        seen.setdefault("all", []).append(envelope.message_id)

    return router


def test_durable_handlers_handle_what_was_stored_while_they_were_down(env: Backend) -> None:
    store = env.open(False)
    before = store.append("Account-1", [deposit("a"), note("x")])
    seen: dict[str, list[UUID]] = {}
    projections = durable_handlers(routed(seen), dependencies={"seen": seen})
    runner = ProjectionRunner(store, projections, **FAST)
    with runner.running():
        after = store.append("Account-1", [deposit("b")])
        for projection in projections:
            runner.wait_for(projection.name, after.positions[-1])
    ids = [r.event_id for r in store.read_all()]
    assert seen["deposit"] == [ids[0], ids[2]]
    assert seen["all"] == ids
    failing = next(p.name for p in projections if p.name.endswith("failing"))
    [letter] = runner.letters_of(failing)
    assert letter.handler == f"projection:{failing}"
    assert letter.envelope.position == before.positions[1]
    assert letter.attempts == 2
    assert letter.error == "RuntimeError: cannot take note 'x'"
    store.close()


def test_async_durable_handlers_run_on_the_async_runner(env: Backend) -> None:
    router = Router()
    handled: list[str] = []

    @router.handler
    async def on_deposit(event: Deposited) -> None:
        await asyncio.sleep(0)
        handled.append(event.account)

    async def main() -> None:
        store = env.open(True)
        await store.append("Account-1", [deposit("a")])
        runner = AsyncProjectionRunner(store, durable_handlers(router), **FAST)
        async with runner.running():
            result = await store.append("Account-1", [deposit("b")])
            [name] = runner.projections
            await runner.wait_for(name, result.positions[-1])
        await store.aclose()

    asyncio.run(main())
    assert handled == ["a", "b"]


class Go(Command):
    pass


def test_only_event_handlers_run_from_the_log() -> None:
    router = Router()

    @router.handler
    def go(command: Go) -> None:
        pass

    with pytest.raises(ValueError, match="Go"):
        durable_handlers(router)
