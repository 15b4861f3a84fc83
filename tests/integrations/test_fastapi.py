from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tidings import (
    AggregateNotFound,
    AsyncMessageBus,
    Command,
    ConcurrencyError,
    DomainError,
    MemoryStore,
    MessageBus,
    Router,
    StoreUnavailable,
    UnitOfWork,
)
from tidings.integrations.fastapi import (
    ReadAfter,
    add_error_handlers,
    error_responses,
    get_bus,
    get_unit_of_work,
    read_your_writes,
    use_tidings,
)


class OutOfPaper(DomainError):
    pass


class Teapot(Exception):
    pass


@dataclass(frozen=True)
class Fail(Command):
    error: str


ERRORS: dict[str, Exception] = {
    "domain": OutOfPaper("the tray is empty"),
    "missing": AggregateNotFound("Printer", "p1"),
    "conflict": ConcurrencyError("someone else printed first"),
    "down": StoreUnavailable("the store is down"),
    "teapot": Teapot("short and stout"),
}

router = Router()


@router.handler
def fail(cmd: Fail) -> None:
    raise ERRORS[cmd.error]


class Job(BaseModel):
    pages: int
    title: str


def make_app(store: MemoryStore, *, bound: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if bound:
            use_tidings(app, MessageBus(router), unit_of_work=lambda: UnitOfWork(store))
        yield

    app = FastAPI(lifespan=lifespan)
    add_error_handlers(app, {Teapot: 418})

    @app.post("/fail/{error}")
    def fail_with(error: str, bus: Annotated[MessageBus, Depends(get_bus)]) -> None:
        bus.handle(Fail(error))

    @app.post("/jobs")
    def submit(job: Job) -> dict[str, int]:
        return {"pages": job.pages}

    @app.get("/units")
    def units(
        first: Annotated[UnitOfWork, Depends(get_unit_of_work)],
        second: Annotated[UnitOfWork, Depends(get_unit_of_work, use_cache=False)],
    ) -> dict[str, Any]:
        return {"distinct": first is not second, "store": first.store is store}

    return app


@pytest.fixture
def client() -> Any:
    with TestClient(make_app(MemoryStore()), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        ("domain", 400, "the tray is empty"),
        ("missing", 404, "Printer 'p1' not found"),
        ("conflict", 409, "someone else printed first"),
        ("down", 503, "the store is down"),
        ("teapot", 418, "short and stout"),
    ],
)
def test_errors_become_statuses_with_a_message(
    client: TestClient, error: str, status: int, message: str
) -> None:
    response = client.post(f"/fail/{error}")
    assert (response.status_code, response.json()) == (status, {"message": message})


def test_a_malformed_body_is_a_422_naming_each_field(client: TestClient) -> None:
    response = client.post("/jobs", json={"pages": "many"})
    assert response.status_code == 422
    message = response.json()["message"]
    assert "pages: Input should be a valid integer" in message
    assert "title: Field required" in message


def test_a_body_that_is_not_json_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["message"]


def test_each_dependency_gets_a_new_unit_of_work_on_the_app_store() -> None:
    store = MemoryStore()
    with TestClient(make_app(store)) as client:
        assert client.get("/units").json() == {"distinct": True, "store": True}


def test_an_async_bus_serves_async_endpoints_with_the_same_error_mapping() -> None:
    app = FastAPI()
    add_error_handlers(app)
    use_tidings(app, AsyncMessageBus(router))

    @app.post("/fail/{error}")
    async def fail_with(error: str, bus: Annotated[AsyncMessageBus, Depends(get_bus)]) -> None:
        await bus.handle(Fail(error))

    with TestClient(app) as client:
        response = client.post("/fail/conflict")
    assert (response.status_code, response.json()) == (
        409,
        {"message": "someone else printed first"},
    )


def test_an_app_without_a_bus_says_what_to_call() -> None:
    app = make_app(MemoryStore(), bound=False)
    with TestClient(app) as client, pytest.raises(RuntimeError, match="use_tidings"):
        client.post("/fail/domain")


def test_the_frameworks_own_errors_have_the_same_body(client: TestClient) -> None:
    missing = client.get("/no/such/path")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    wrong = client.get("/jobs")
    assert (wrong.status_code, wrong.json()) == (405, {"message": "Method Not Allowed"})


def test_error_responses_declare_the_bodies_the_handlers_give() -> None:
    app = FastAPI()
    add_error_handlers(app)

    @app.post("/jobs", responses=error_responses(409, 422, s409="Printed already"))
    def submit(job: Job) -> None:
        """Nothing to do."""

    operation = app.openapi()["paths"]["/jobs"]["post"]["responses"]
    assert operation["409"]["description"] == "Printed already"
    assert operation["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorMessage"
    }
    assert operation["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvalidRequest"
    }
    with TestClient(app) as client:
        invalid = client.post("/jobs", json={}).json()
    assert set(invalid) == {"message", "errors"}
    assert invalid["errors"][0] == {
        "loc": ["body", "pages"],
        "msg": "Field required",
        "type": "missing",
    }


def test_async_endpoints_get_the_bus_and_their_read_position_without_a_worker_thread() -> None:
    """The dependencies resolve on the event loop: a request that needs no thread waits for none.

    The pool is cut to one thread and a sync endpoint holds it; an async
    endpoint taking `get_bus` and `read_your_writes` still answers at once.
    """
    entered, released = threading.Event(), threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_tidings(app, MessageBus(router))
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/hold")
    def hold() -> None:
        entered.set()
        released.wait(5)

    @app.get("/read")
    async def read(
        bus: Annotated[MessageBus, Depends(get_bus)],
        after: Annotated[ReadAfter, Depends(read_your_writes("view"))],
    ) -> dict[str, int]:
        return {"after": after.position}

    with TestClient(app) as client:
        holder = threading.Thread(target=client.get, args=("/hold",))
        holder.start()
        try:
            assert entered.wait(5)
            started = time.monotonic()
            assert client.get("/read").json() == {"after": 0}
            assert time.monotonic() - started < 2, "the read waited for the held thread"
        finally:
            released.set()
            holder.join()
