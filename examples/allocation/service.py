"""The allocation service over HTTP: a FastAPI app on the database that `TIDINGS_STORE` names.

::

    POST /add_batch               {"ref", "sku", "qty", "eta": "YYYY-MM-DD" | null}  -> 201
    POST /allocate                {"orderid", "sku", "qty"}   -> 202 {"batchref": ... | null}
    POST /change_batch_quantity   {"ref", "qty"}              -> 202
    GET  /allocations/{orderid}   -> 200 [{"sku", "batchref"}, ...] from the read model, or 404
    GET  /events?after=0          -> the event log, with each event's conversation and cause

Run it with `python -m examples.allocation serve` (uvicorn, 127.0.0.1:8000)
or `tidings serve examples.allocation.service:app`; `create_app` builds one
for a given store URL. Endpoints are plain functions: FastAPI runs
them on its thread pool, where the blocking bus handles one request per thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from examples.allocation.database import Database, open_database
from examples.allocation.messages import (
    Allocate,
    ChangeBatchQuantity,
    CreateBatch,
    GetAllocations,
)
from examples.allocation.views import AllocationRow
from tidings import Codec, MessageBus
from tidings.integrations.fastapi import add_error_handlers, get_bus, use_tidings

Bus = Annotated[MessageBus, Depends(get_bus)]


class AddBatch(BaseModel):
    ref: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    qty: int = Field(ge=0)
    eta: date | None = None


class AllocateLine(BaseModel):
    orderid: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)


class ChangeQuantity(BaseModel):
    ref: str = Field(min_length=1)
    qty: int = Field(ge=0)


class Allocation(BaseModel):
    batchref: str | None = Field(description="The batch the line went to; null when out of stock.")


class AllocationOfLine(BaseModel):
    sku: str
    batchref: str


class StoredEvent(BaseModel):
    position: int
    stream: str
    version: int
    type: str
    data: dict[str, Any]
    event_id: str
    correlation_id: str
    causation_id: str | None


def create_app(store_url: str | None = None) -> FastAPI:
    """The service on the database `store_url` names (default: `TIDINGS_STORE`, else SQLite)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = open_database(store_url)
        app.state.database = database
        use_tidings(app, database.bus())
        try:
            yield
        finally:
            database.close()

    app = FastAPI(title="Allocation service", lifespan=lifespan)
    add_error_handlers(app)

    @app.post("/add_batch", status_code=201)
    def add_batch(body: AddBatch, bus: Bus) -> dict[str, str]:
        eta = body.eta.isoformat() if body.eta is not None else None
        bus.handle(CreateBatch(body.ref, body.sku, body.qty, eta))
        return {"ref": body.ref}

    @app.post("/allocate", status_code=202)
    def allocate(body: AllocateLine, bus: Bus) -> Allocation:
        return Allocation(batchref=bus.handle(Allocate(body.orderid, body.sku, body.qty)))

    @app.post("/change_batch_quantity", status_code=202)
    def change_batch_quantity(body: ChangeQuantity, bus: Bus) -> dict[str, str]:
        bus.handle(ChangeBatchQuantity(body.ref, body.qty))
        return {"ref": body.ref}

    @app.get(
        "/allocations/{orderid}",
        response_model=list[AllocationOfLine],
        responses={404: {"description": "The order has no allocations"}},
    )
    def allocations(orderid: str, bus: Bus) -> Any:
        rows: list[AllocationRow] = bus.handle(GetAllocations(orderid))
        if not rows:
            return JSONResponse({"message": f"No allocations for order {orderid}"}, 404)
        return rows

    @app.get("/events")
    def events(
        after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[StoredEvent]:
        database: Database = app.state.database
        codec = Codec()
        listed = []
        for record in database.store.read_all(after=after, limit=limit):
            envelope = codec.envelope(record)
            listed.append(
                StoredEvent(
                    position=record.position,
                    stream=record.stream,
                    version=record.version,
                    type=record.type,
                    data=dataclasses.asdict(envelope.message),  # type: ignore[call-overload]
                    event_id=str(record.event_id),
                    correlation_id=str(envelope.correlation_id),
                    causation_id=str(envelope.causation_id) if envelope.causation_id else None,
                )
            )
        return listed

    return app


# The store URL is read when the app starts: `tidings serve examples.allocation.service:app`.
app = create_app()
