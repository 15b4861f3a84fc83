"""FastAPI integration: the bus and a unit of work per request as dependencies, errors as HTTP.

Needs the `web` extra (`pip install "tidings[web]"`).

::

    app = FastAPI(lifespan=lifespan)
    add_error_handlers(app)

    @asynccontextmanager
    async def lifespan(app):
        use_tidings(app, bootstrap(), unit_of_work=lambda: MyUnitOfWork(store))
        yield

    @app.post("/allocate", status_code=202)
    def allocate(body: AllocateBody, bus: Annotated[MessageBus, Depends(get_bus)]) -> ...:
        return {"batchref": bus.handle(Allocate(body.orderid, body.sku, body.qty))}

Errors become JSON bodies `{"message": ...}` (`ErrorMessage`): a
`DomainError` is 400 (the request asked for something the rules refuse), a
missing aggregate or stream 404, a `ConcurrencyError` or `EventIdConflict`
409 (try again), an unreachable store 503, and a malformed request 422 with a
message naming each bad field and the errors one by one (`InvalidRequest`).
`error_responses(400, 409, ...)` declares them in an endpoint's OpenAPI::

    @app.post("/allocate", status_code=202, responses=error_responses(400, 409, 422, 503))

Reads that must see a client's own writes (session consistency: the
`X-Log-Position` header and `?after=`) are in `tidings.integrations.consistency`,
whose names this module offers too: `WrittenPositions`,
`answer_written_position`, `read_your_writes` (`ReadAfter`) and
`wait_for_projection`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f'tidings.integrations.fastapi needs the web extra: pip install "tidings[web]" ({exc})',
        name=exc.name,
    ) from exc

from tidings._async.bus import AsyncMessageBus
from tidings._sync.bus import MessageBus
from tidings.errors import (
    AggregateNotFound,
    ConcurrencyError,
    DomainError,
    EventIdConflict,
    StoreUnavailable,
    StreamNotFound,
)
from tidings.integrations.consistency import (
    POSITION_HEADER,
    LogPosition,
    ReadAfter,
    WrittenPositions,
    answer_written_position,
    read_your_writes,
    wait_for_projection,
)
from tidings.projections import (
    AsyncProjectionRunner,
    PositionBeyondHead,
    ProjectionRunner,
    ProjectionStopped,
    ProjectionTimeout,
)

__all__ = [
    "ERROR_STATUS",
    "POSITION_HEADER",
    "ErrorMessage",
    "FieldError",
    "InvalidRequest",
    "LogPosition",
    "ReadAfter",
    "WrittenPositions",
    "add_error_handlers",
    "answer_written_position",
    "error_responses",
    "get_bus",
    "get_unit_of_work",
    "read_your_writes",
    "use_tidings",
    "wait_for_projection",
]

ERROR_STATUS: dict[type[Exception], int] = {
    DomainError: 400,
    AggregateNotFound: 404,
    StreamNotFound: 404,
    PositionBeyondHead: 400,
    ConcurrencyError: 409,
    EventIdConflict: 409,
    StoreUnavailable: 503,
    ProjectionTimeout: 503,
    ProjectionStopped: 503,
}
"""The HTTP status of each error class; the nearest class in an error's hierarchy wins."""


def use_tidings(
    app: FastAPI,
    bus: MessageBus | AsyncMessageBus,
    *,
    unit_of_work: Callable[[], Any] | None = None,
    runner: ProjectionRunner | AsyncProjectionRunner | None = None,
) -> None:
    """Give `app`'s endpoints `bus` (`get_bus`) and units of work made by `unit_of_work`.

    `runner` runs the read models that `read_your_writes` waits for.
    """
    app.state.tidings_bus = bus
    app.state.tidings_unit_of_work = unit_of_work
    app.state.tidings_runner = runner


async def get_bus(request: Request) -> Any:
    """Dependency: the app's message bus.

    A coroutine, so FastAPI resolves it on the event loop: a plain function
    dependency would take a worker thread of the pool for each request.
    """
    try:
        return request.app.state.tidings_bus
    except AttributeError:
        raise RuntimeError("no bus for this app: call use_tidings(app, bus) at start-up") from None


def get_unit_of_work(request: Request) -> Any:
    """Dependency: a new unit of work for this request, not yet opened."""
    factory = getattr(request.app.state, "tidings_unit_of_work", None)
    if factory is None:
        raise RuntimeError(
            "no unit of work for this app: call use_tidings(app, bus, unit_of_work=...) at start-up"
        )
    return factory()


def add_error_handlers(app: FastAPI, statuses: dict[type[Exception], int] | None = None) -> None:
    """Answer tidings errors and malformed requests with a status and `{"message": ...}`.

    `statuses` adds to or overrides `ERROR_STATUS`, for an application's own errors.
    HTTP errors of the framework itself (an unknown path, a method not
    allowed) and `HTTPException`s get the same body, so every error has one shape.
    """
    table = {**ERROR_STATUS, **(statuses or {})}

    def error_response(request: Request, exc: Exception) -> JSONResponse:
        status = next(table[kind] for kind in type(exc).__mro__ if kind in table)
        # A 503 passes: say when to come back rather than leave clients to guess.
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"message": str(exc)}, status_code=status, headers=headers)

    def validation_response(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        return JSONResponse(
            {"message": "; ".join(_describe(error) for error in errors), "errors": _plain(errors)},
            status_code=422,
        )

    def http_response(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    for kind in table:
        app.add_exception_handler(kind, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    app.add_exception_handler(HTTPException, http_response)


class ErrorMessage(BaseModel):
    """The body of an error answer: what went wrong, in words."""

    message: str


class FieldError(BaseModel):
    """One thing wrong with a request: where (`["body", "qty"]`), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """The body of a 422: a message naming each bad field, and the errors one by one."""

    message: str
    errors: list[FieldError]


_ERROR_ANSWERS: dict[int, tuple[type[BaseModel], str]] = {
    400: (ErrorMessage, "The rules refuse the request"),
    404: (ErrorMessage, "Not found"),
    409: (ErrorMessage, "A conflict with what is stored, or with a concurrent request"),
    422: (InvalidRequest, "The request is malformed: the message names each bad field"),
    503: (ErrorMessage, "The store is unavailable; try again later"),
}


def error_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of an endpoint that may answer with these error statuses.

    Each gets the body `add_error_handlers` answers with (422 replaces
    FastAPI's default, whose body it does not give). A keyword
    `s404="No such order"` says in the endpoint's own words what a status means.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model, description = _ERROR_ANSWERS.get(status, (ErrorMessage, "An error"))
        responses[status] = {
            "model": model,
            "description": described.get(f"s{status}", description),
        }
    return responses


_LOCATIONS = frozenset({"body", "path", "query", "header", "cookie"})


def _describe(error: dict[str, Any]) -> str:
    """`qty: Input should be a valid integer` from one of pydantic's errors."""
    location = [str(part) for part in error.get("loc", ())]
    if len(location) > 1 and location[0] in _LOCATIONS:
        location = location[1:]
    field = ".".join(location) or "body"
    return f"{field}: {error.get('msg', 'invalid')}"


def _plain(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors without their `ctx` and `input`, which may hold values JSON cannot encode."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors
    ]
