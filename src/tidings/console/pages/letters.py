"""Dead letter pages: the letters with their errors, one in full with its traceback; retry, drop.

A projection's letter is retried by the console's runner (a parked one
resumes its projection, whose runner tries the event again) and dropped as
`tidings dlq drop` does (a parked projection skips its event). A bus
handler's letter is retried on the bus given to `console_app`.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode
from uuid import UUID

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tidings.console.errors import ConsoleError
from tidings.console.inputs import form_fields, letter_id, limit_of, text_of
from tidings.console.state import Console
from tidings.console.views import letter_view
from tidings.dead_letters import DeadLetter
from tidings.projections import projection_of
from tidings.sagas import saga_of

__all__ = ["letter_routes"]


def _gone(wanted: UUID) -> ConsoleError:
    return ConsoleError(404, f"dead letter {wanted} is gone: it was retried or dropped since")


def letter_routes(console: Console) -> list[Route]:
    async def get(wanted: UUID) -> DeadLetter:
        try:
            return await console.letters.get(wanted)
        except KeyError:
            raise _gone(wanted) from None

    async def listing(request: Request) -> Response:
        query = request.query_params
        handler = text_of(query.get("handler"), "handler")
        limit = limit_of(query, console.page_size)
        cursor = None if not query.get("after") else letter_id(query["after"])

        try:
            found = await console.letters.list(handler=handler, after=cursor, limit=limit + 1)
        except KeyError:
            raise ConsoleError(
                404, f"no dead letter {cursor} to page after (retried or dropped since?)"
            ) from None
        total = await console.letters.count(handler=handler)
        more, found = len(found) > limit, found[:limit]
        fields = [("handler", handler)] if handler else []
        next_url = f"?{urlencode([*fields, ('after', str(found[-1].id))])}" if more else None
        return console.page(
            request,
            "letters.html",
            letters=[letter_view(letter) for letter in found],
            total=total,
            handler=handler or "",
            next_url=next_url,
        )

    async def detail(request: Request) -> Response:
        wanted = letter_id(request.path_params["id"])
        letter = await get(wanted)
        return console.page(request, "letter.html", letter=letter_view(letter))

    async def retry(wanted: UUID) -> str:
        letter = await get(wanted)
        name = projection_of(letter.handler)
        if saga_of(letter.handler) is not None:
            raise ConsoleError(
                409,
                f"{wanted} is a parked saga: resume it with "
                f"`tidings dlq retry {wanted} --sagas MODULE:ATTRIBUTE`",
            )
        if name is None:
            if console.bus is None:
                raise ConsoleError(
                    409,
                    f"{wanted} is a letter of handler {letter.handler}: retrying it needs the "
                    "application's bus (console_app(store, bus=...), or --app)",
                )
            try:
                delivered = await console.bus.retry_dead_letter(wanted)
            except KeyError:
                raise _gone(wanted) from None
            except LookupError as exc:
                raise ConsoleError(409, str(exc).strip("'\"")) from None
        else:
            key = name.partition("#")[0]
            if key not in console.runner.projections:
                raise ConsoleError(
                    409,
                    f"{wanted} is a letter of projection {name}, which this console was not "
                    "given: console_app(store, projections=[...]), or --projections",
                )
            if letter.parked:
                await console.runner.resume(name)
                return f"{wanted}: projection {name} resumed; its runner tries the event again"
            try:
                delivered = await console.runner.retry_dead_letter(wanted)
            except KeyError:
                raise _gone(wanted) from None
            except (LookupError, ValueError) as exc:
                raise ConsoleError(409, str(exc).strip("'\"")) from None
        if delivered:
            return f"{wanted}: delivered, dropped from the dead letters"
        return f"{wanted}: failed again, kept as a new dead letter"

    async def drop(wanted: UUID) -> str:
        letter = await get(wanted)
        if letter.parked and saga_of(letter.handler) is not None:
            raise ConsoleError(
                409, f"{wanted} is a parked saga, which waits to be resumed: it cannot be dropped"
            )
        name = projection_of(letter.handler)
        if letter.parked and name is not None:
            try:
                await console.runner.skip(name)
            except ValueError:
                pass  # no longer parked on it: the letter is stale, dropped below
            else:
                return f"{wanted}: dropped; projection {name} runs on from the next event"
        try:
            await console.letters.remove(wanted)
        except KeyError:
            raise _gone(wanted) from None
        return f"{wanted}: dropped"

    async def act(request: Request) -> Response:
        console.check_action(dict(form_fields(await request.body())))
        wanted = letter_id(request.path_params["id"])
        action = request.path_params["action"]
        if action == "retry":
            notice = await retry(wanted)
        elif action == "drop":
            notice = await drop(wanted)
        else:
            raise ConsoleError(404, f"no dead letter action {action!r}: retry or drop")
        base = console.base(request)
        return RedirectResponse(f"{base}/dead-letters?notice={quote(notice)}", status_code=303)

    return [
        Route("/dead-letters", listing, name="letters"),
        Route("/dead-letters/{id}", detail, name="letter"),
        Route("/dead-letters/{id}/{action}", act, methods=["POST"], name="letter_action"),
    ]
