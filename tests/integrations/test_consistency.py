"""Read your writes over HTTP: a write answers with its log position, a read waits for it."""

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tests.projections.ledger import Backend, Deposited, backend
from tidings import Command, EventSourced, MessageBus, PerCall, Router, UnitOfWork, applies
from tidings.integrations.fastapi import (
    POSITION_HEADER,
    ReadAfter,
    WrittenPositions,
    add_error_handlers,
    answer_written_position,
    error_responses,
    get_bus,
    read_your_writes,
    use_tidings,
)
from tidings.projections import ProjectionRunner


@dataclass(frozen=True)
class Deposit(Command):
    account: str
    amount: int


class Account(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount


router = Router()


@router.handler
def deposit(cmd: Deposit, uow: UnitOfWork) -> None:
    with uow:
        account = uow.repository(Account).get(cmd.account) or Account(cmd.account)
        account.record(Deposited(cmd.account, cmd.amount))
        uow.repository(Account).add(account)
        uow.commit()


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def make_app(env: Backend, *, run_projections: bool = True, wait: float = 5.0) -> FastAPI:
    store = env.open(False)
    ledger = env.ledger()
    runner = ProjectionRunner(store, [ledger], poll_interval=0.05, lease=2.0)
    positions = WrittenPositions()
    read_ledger_after = read_your_writes("ledger", timeout=wait)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = MessageBus(
            router,
            dependencies={UnitOfWork: PerCall(lambda: UnitOfWork(store))},
            middleware=[positions],
        )
        use_tidings(app, bus, runner=runner)
        runner.prepare()
        if run_projections:
            with runner.running():
                yield
        else:
            yield
        store.close()

    app = FastAPI(lifespan=lifespan)
    add_error_handlers(app)
    answer_written_position(app, positions)

    @app.post("/deposit")
    def post_deposit(body: dict[str, Any], bus: Annotated[MessageBus, Depends(get_bus)]) -> None:
        bus.handle(Deposit(str(body["account"]), int(body["amount"])))

    @app.get("/balance/{account}", responses=error_responses(400, 422, 503))
    async def balance(
        account: str, after: Annotated[ReadAfter, Depends(read_ledger_after)]
    ) -> dict[str, Any]:
        await after.wait()
        return {"ledger": {k: list(v) for k, v in env.read(ledger).items()}.get(account)}

    return app


def test_a_write_answers_with_its_position_and_a_read_after_it_sees_it(env: Backend) -> None:
    with TestClient(make_app(env)) as client:
        for n in range(1, 21):
            wrote = client.post("/deposit", json={"account": "a", "amount": 1})
            assert wrote.status_code == 200
            position = int(wrote.headers[POSITION_HEADER])
            by_query = client.get("/balance/a", params={"after": position})
            assert by_query.json() == {"ledger": [n, n]}
        # The header sent back does the same as the query.
        wrote = client.post("/deposit", json={"account": "b", "amount": 5})
        echoed = client.get("/balance/b", headers={POSITION_HEADER: wrote.headers[POSITION_HEADER]})
        assert echoed.json() == {"ledger": [5, 1]}


def test_an_answer_that_recorded_nothing_carries_no_position(env: Backend) -> None:
    with TestClient(make_app(env)) as client:
        read = client.get("/balance/nobody")
        assert read.status_code == 200
        assert POSITION_HEADER not in read.headers


def test_a_read_model_that_does_not_catch_up_is_a_503_to_come_back_to(env: Backend) -> None:
    with TestClient(make_app(env, run_projections=False, wait=0.2)) as client:
        wrote = client.post("/deposit", json={"account": "a", "amount": 1})
        read = client.get("/balance/a", params={"after": wrote.headers[POSITION_HEADER]})
        assert read.status_code == 503
        assert read.headers["Retry-After"] == "1"
        assert "did not reach position" in read.json()["message"]


def test_a_position_beyond_the_head_or_not_a_number_is_refused_at_once(env: Backend) -> None:
    with TestClient(make_app(env, run_projections=False)) as client:
        beyond = client.get("/balance/a", params={"after": 10**12})
        assert beyond.status_code == 400
        assert "beyond the log's head" in beyond.json()["message"]
        for bad in ("1.0", "+1", "-1", str(2**63)):
            refused = client.get("/balance/a", params={"after": bad})
            assert refused.status_code == 422, bad
            assert "after" in refused.json()["message"]
        garbled = client.get("/balance/a", headers={POSITION_HEADER: "soon"})
        assert garbled.status_code == 422
        assert POSITION_HEADER in garbled.json()["message"]


def test_reads_waiting_for_the_read_model_hold_up_no_write(env: Backend) -> None:
    with TestClient(make_app(env, run_projections=False, wait=3.0)) as client:
        after = client.post("/deposit", json={"account": "a", "amount": 1}).headers[POSITION_HEADER]
        answers: list[tuple[int, float]] = []

        def wait_to_read() -> None:
            status = client.get("/balance/a", params={"after": after}).status_code
            answers.append((status, time.monotonic()))

        readers = [threading.Thread(target=wait_to_read) for _ in range(50)]
        for reader in readers:
            reader.start()
        time.sleep(0.5)  # every read is waiting now: more of them than the thread pool
        began = time.monotonic()
        wrote = client.post("/deposit", json={"account": "b", "amount": 1})
        took = time.monotonic() - began
        for reader in readers:
            reader.join(timeout=30)
    assert wrote.status_code == 200
    assert took < 1.5, f"a write took {took:.2f} s behind 50 waiting reads"
    assert [status for status, _ in answers] == [503] * 50
    assert all(at > began + took for _, at in answers), "a read stopped waiting early"
