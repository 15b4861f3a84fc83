"""The live tail: `$all` as it commits, sent to the page as server-sent events.

Each event is one SSE message whose id is its position, so a browser that
reconnects (`EventSource` does by itself) resumes after the last one it got
(`Last-Event-ID`). A stream ends after `tail_seconds` and is resumed so; a
comment every poll with nothing new lets the server notice a closed page.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tidings.console.inputs import Filters, whole_number
from tidings.console.state import Console
from tidings.console.views import event_view
from tidings.store import RecordedEvent

__all__ = ["tail_routes"]

_BATCH = 200


def tail_routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        filters = Filters(request.query_params)
        head = await console.log.head_position()
        return console.page(request, "tail.html", filters=filters, head=head)

    async def stream(request: Request) -> Response:
        filters = Filters(request.query_params)
        resumed = request.headers.get("last-event-id")
        after = whole_number(resumed or request.query_params.get("after"), "after", default=-1)
        if after < 0:
            after = await console.log.head_position()

        async def read(position: int) -> tuple[list[RecordedEvent], int]:
            # Everything up to the head taken first is readable: a filtered tail that
            # found nothing there need not look at those positions again.
            head = await console.log.head_position()
            records = await console.log.read_all(
                after=position,
                limit=_BATCH,
                categories=filters.categories or None,
                types=filters.types or None,
            )
            return records, head

        async def messages() -> AsyncIterator[str]:
            position = after
            deadline = time.monotonic() + console.tail_seconds
            yield "retry: 500\n\n"
            while time.monotonic() < deadline:
                records, head = await read(position)
                for record in records:
                    data = json.dumps(event_view(record).as_json(), ensure_ascii=False)
                    yield f"id: {record.position}\nevent: tidings\ndata: {data}\n\n"
                if records:
                    position = records[-1].position
                if len(records) < _BATCH:
                    position = max(position, head)
                    yield ": waiting\n\n"
                    await anyio.sleep(console.tail_interval)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)

    return [
        Route("/tail", page, name="tail"),
        Route("/tail/events", stream, name="tail_events"),
    ]
