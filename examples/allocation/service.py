"""The allocation service over HTTP: a FastAPI app on the database that `TIDINGS_STORE` names.

::

    POST /add_batch               {"ref", "sku", "qty", "eta": "YYYY-MM-DD" | null}  -> 201
    POST /allocate                {"orderid", "sku", "qty"}   -> 202 {"batchref": ... | null}
    POST /change_batch_quantity   {"ref", "qty"}              -> 202
    GET  /allocations/{orderid}?after=P  -> 200 [{"sku", "batchref"}, ...] from the read model,
                                             or 404
    GET  /events?after=0          -> the event log, with each event's conversation and cause

The read model is an inline projection of the log
(`views.AllocationsProjection`): each command's unit of work writes it in
the transaction of its events, so a GET right after a POST sees what the
POST did. A POST that recorded events still answers with the log position of
the last in the `X-Log-Position` header, and a GET still takes
`?after=<position>` (`read_your_writes` of tidings' FastAPI integration; a
client may send the header back instead): the read model has reached it
when the write returned, so it is met at once, and a position past the
log's head is a 400.

Requests are validated at the door by the schema the OpenAPI document
shows: strict JSON types (`qty: false` and `eta: 0` are refused), bounds the
tables hold (`orm.MAX_QUANTITY`, `orm.MAX_TEXT`), no control characters
(NUL, line breaks) in ids, no unknown fields; anything else is a 422
naming the field. Every status an endpoint answers with is declared there
with its body: 400 (the rules refuse: unknown SKU or batch), 404, 409 (a
duplicate batch reference, or a conflict that outlived its retries), 422
and 503.

The stock figures (`stock`) are kept in the background by the service's
worker (`worker`), which the service runs in its own process unless told
not to (`serve --no-worker`, `create_app(worker=False)`).

Run it with `python -m examples.allocation serve` (uvicorn, 127.0.0.1:8000)
or `tidings serve examples.allocation.service:app`; `create_app` builds one
for a given store URL. Endpoints that write are plain functions: FastAPI runs
them on its thread pool, where the blocking bus handles one request per thread.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from examples.allocation import channels
from examples.allocation import worker as allocation_worker
from examples.allocation.database import Database, open_database
from examples.allocation.domain import DuplicateBatch
from examples.allocation.messages import (
    Allocate,
    ChangeBatchQuantity,
    CreateBatch,
    GetAllocations,
)
from examples.allocation.orm import MAX_QUANTITY, MAX_TEXT, PRINTABLE
from examples.allocation.views import ALLOCATIONS_VIEW, AllocationRow
from tidings import (
    Codec,
    MessageBus,
)
from tidings.integrations.fastapi import (
    LogPosition,
    ReadAfter,
    WrittenPositions,
    add_error_handlers,
    answer_written_position,
    error_responses,
    get_bus,
    read_your_writes,
    use_tidings,
)

Bus = Annotated[MessageBus, Depends(get_bus)]

READ_MODEL_WAIT = 5.0
"""How long a read with `?after=` may wait for the read model, in seconds (inline: never)."""


Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEXT,
        pattern=PRINTABLE,
        description=f"1 to {MAX_TEXT} characters, no control characters",
    ),
]
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: object) -> date | None:
    """A date as JSON carries it: text of the form YYYY-MM-DD (or null), nothing else.

    FastAPI validates the decoded JSON, where a strict date would refuse text
    and a lax one would take `0` or `"2031-01-01T00:00"`.
    """
    if value is None:
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not a date: {exc}") from None
    raise ValueError("a date is text of the form YYYY-MM-DD")


_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _whole_number(value: object) -> object:
    """A query's integer as a client writes one: decimal digits (not `1.0`, `+1` or `1e3`)."""
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise ValueError("an integer is written in decimal digits")
    return value


Limit = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole_number)]


class _TextConvertor(Convertor[str]):
    """A path segment as any text: slashes (sent as %2F) and line breaks included.

    Starlette's own `path` stops at a line break and lets the route's `$` drop
    a last one, so `/allocations/a%0A` would answer for order `a`; taken whole,
    the text meets the schema, which refuses it.
    """

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _TextConvertor())


class Body(BaseModel):
    """A request body: JSON types as declared, no coercion, no fields beyond those declared."""

    model_config = ConfigDict(strict=True, extra="forbid")


class AddBatch(Body):
    ref: Text
    sku: Text
    qty: Quantity
    eta: Annotated[
        date | None,
        BeforeValidator(_iso_date),
        Field(description="YYYY-MM-DD; null for stock in hand"),
    ] = None


class AllocateLine(Body):
    orderid: Text
    sku: Text
    qty: Annotated[int, Field(gt=0, le=MAX_QUANTITY)]


class ChangeQuantity(Body):
    ref: Text
    qty: Quantity


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


def create_app(
    store_url: str | None = None, redis_url: str | None = None, *, worker: bool | None = None
) -> FastAPI:
    """The service on the database `store_url` names (default: `TIDINGS_STORE`, else SQLite).

    While it runs, it runs its background work too (`worker.background`):
    the stock figures and, with `redis_url` (default: `TIDINGS_REDIS_URL`,
    else none), the book's Redis channels (see `channels`). With `worker`
    false (default: unless `ALLOCATION_NO_WORKER` is set) it leaves them to
    `tidings worker examples.allocation.worker:worker`.
    """
    positions = WrittenPositions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = open_database(store_url)
        try:
            # Not run: it answers `?after` from the checkpoint the units of work move.
            runner = database.projection_runner()
            app.state.database = database
            app.state.runner = runner
            bus = database.bus(middleware=[positions])
            use_tidings(app, bus, runner=runner)
            # The read model's table exists before the first read.
            await anyio.to_thread.run_sync(runner.prepare)
            redis = redis_url or channels.redis_url()
            if not (allocation_worker.runs_in_service() if worker is None else worker):
                yield
                return
            # The background work (the stock figures, the Redis channels) in this process.
            background = allocation_worker.background(
                database.store,
                redis=allocation_worker.RedisChannels(database.url, redis, bus) if redis else None,
            )
            await anyio.to_thread.run_sync(background.prepare)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(partial(anyio.to_thread.run_sync, background.run))
                try:
                    yield
                finally:
                    background.stop()
        finally:
            database.close()

    app = FastAPI(title="Allocation service", lifespan=lifespan)
    add_error_handlers(app, {DuplicateBatch: 409})
    answer_written_position(app, positions)

    @app.post(
        "/add_batch",
        status_code=201,
        responses=error_responses(
            409, 422, 503, s409="A batch has this reference already, or a conflict outlived retries"
        ),
    )
    def add_batch(body: AddBatch, bus: Bus) -> dict[str, str]:
        eta = body.eta.isoformat() if body.eta is not None else None
        bus.handle(CreateBatch(body.ref, body.sku, body.qty, eta))
        return {"ref": body.ref}

    @app.post(
        "/allocate",
        status_code=202,
        responses=error_responses(400, 409, 422, 503, s400="No product has this SKU"),
    )
    def allocate(body: AllocateLine, bus: Bus) -> Allocation:
        return Allocation(batchref=bus.handle(Allocate(body.orderid, body.sku, body.qty)))

    @app.post(
        "/change_batch_quantity",
        status_code=202,
        responses=error_responses(400, 409, 422, 503, s400="No batch has this reference"),
    )
    def change_batch_quantity(body: ChangeQuantity, bus: Bus) -> dict[str, str]:
        bus.handle(ChangeBatchQuantity(body.ref, body.qty))
        return {"ref": body.ref}

    @app.get(
        "/allocations/{orderid:text}",
        response_model=list[AllocationOfLine],
        responses=error_responses(
            400,
            404,
            422,
            503,
            s400="`after` is beyond the log's head: no write returned that position",
            s404="The order has no allocations",
            s503="The read model did not reach `after` in time, or the store is unavailable",
        ),
    )
    async def allocations(
        orderid: Annotated[str, Path(min_length=1, max_length=MAX_TEXT, pattern=PRINTABLE)],
        bus: Bus,
        after: Annotated[ReadAfter, Depends(read_your_writes(ALLOCATIONS_VIEW, READ_MODEL_WAIT))],
    ) -> Any:
        await after.wait()
        rows: list[AllocationRow] = await anyio.to_thread.run_sync(
            bus.handle, GetAllocations(orderid)
        )
        if not rows:
            return JSONResponse({"message": f"No allocations for order {orderid}"}, 404)
        return rows

    @app.get("/events", responses=error_responses(422, 503))
    def events(
        after: LogPosition = 0,
        limit: Limit = 100,
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


# The store URL is read when the app starts:
# `tidings serve examples.allocation.service:app`.
app = create_app()
