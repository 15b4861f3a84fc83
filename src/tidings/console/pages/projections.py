"""The projections page: position, lag, state and lease of each; pause, resume, rebuild."""

from __future__ import annotations

from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tidings.console.errors import ConsoleError
from tidings.console.inputs import form_fields
from tidings.console.state import Console
from tidings.projections import ProjectionState, ProjectionStatus
from tidings.projections.partitions import SEPARATOR

__all__ = ["projection_routes"]

_RESUMABLE = (ProjectionState.PAUSED, ProjectionState.PARKED)


def projection_routes(console: Console) -> list[Route]:
    def known(name: str) -> str:
        if name not in console.runner.projections:
            known_names = ", ".join(sorted(console.runner.projections)) or "none"
            raise ConsoleError(404, f"no projection named {name!r} (known: {known_names})")
        return name

    async def listing(request: Request) -> Response:
        found: list[ProjectionStatus] = await console.runner.status()
        rows = []
        for status in found:
            projection = status.name.partition(SEPARATOR)[0]
            rows.append(
                {
                    "status": status,
                    "projection": projection,
                    "resumable": status.state in _RESUMABLE,
                    "rebuild": console.rebuilds.progress(projection),
                }
            )
        return console.page(
            request, "projections.html", rows=rows, defined=bool(console.runner.projections)
        )

    async def act(request: Request) -> Response:
        console.check_action(dict(form_fields(await request.body())))
        name = known(request.path_params["name"])
        action = request.path_params["action"]
        rebuild = None
        if action == "pause":
            await console.runner.pause(name)
            notice = f"{name}: paused"
        elif action == "resume":
            await console.runner.resume(name)
            notice = f"{name}: running"
        elif action == "rebuild":
            rebuild = console.rebuilds.start(name)
            notice = f"{name}: rebuilding" if rebuild else f"{name}: a rebuild already runs"
        else:
            raise ConsoleError(404, f"no projection action {action!r}: pause, resume or rebuild")
        base = console.base(request)
        return RedirectResponse(
            f"{base}/projections?notice={quote(notice)}",
            status_code=303,
            background=None if rebuild is None else BackgroundTask(rebuild),
        )

    async def progress(request: Request) -> Response:
        name = known(request.path_params["name"])
        found = console.rebuilds.progress(name)
        if found is None:
            raise ConsoleError(404, f"no rebuild of {name!r} was started here")
        return JSONResponse(found.as_json())

    return [
        Route("/projections", listing, name="projections"),
        Route("/projections/{name}/rebuild", progress, methods=["GET"], name="rebuild_progress"),
        Route("/projections/{name}/{action}", act, methods=["POST"], name="projection_action"),
    ]
