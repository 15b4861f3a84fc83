"""Alongside OpenTelemetry's FastAPI instrumentation: the request's span is the command's parent."""

from __future__ import annotations

import anyio
import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import SpanKind

from tests.observability.bank import Account, Open, Opened
from tests.observability.conftest import Telemetry
from tidings import AsyncMemoryStore, AsyncMessageBus, AsyncUnitOfWork, PerCall, Router
from tidings.observability import instrument


def test_a_request_span_is_the_parent_of_the_command_it_dispatches(telemetry: Telemetry) -> None:
    store = AsyncMemoryStore()
    router = Router()

    @router.handler
    async def open_account(command: Open, uow: AsyncUnitOfWork) -> None:
        async with uow:
            account = Account(command.account_id)
            account.record(Opened(command.account_id))
            await uow.repository(Account).add(account)
            await uow.commit()

    bus = AsyncMessageBus(router, dependencies={"uow": PerCall(lambda: AsyncUnitOfWork(store))})
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    app = FastAPI()

    @app.post("/accounts/{account_id}", status_code=201)
    async def open_route(account_id: str) -> dict[str, str]:
        await bus.handle(Open(account_id))
        return {"opened": account_id}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=telemetry.tracer_provider)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/accounts/acc-1")

    assert anyio.run(call).status_code == 201
    spans = telemetry.spans.get_finished_spans()
    [request] = [s for s in spans if s.kind is SpanKind.SERVER]
    [command] = [s for s in spans if s.name == "process Open"]
    [handler] = [s for s in spans if s.name == "process Opened"]
    assert request.name == "POST /accounts/{account_id}"
    assert request.context is not None and command.parent is not None
    assert command.parent.span_id == request.context.span_id
    assert handler.context is not None and handler.context.trace_id == request.context.trace_id
