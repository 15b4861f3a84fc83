"""Pages of the log: `$all` and streams, filtered and paged by position, and one event in full."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.console.causation import causation_tree
from tidings.console.errors import ConsoleError
from tidings.console.graph import GRAPH_LIMIT, causation_graph, count_nodes
from tidings.console.inputs import Filters, limit_of, name_of, position_of, text_of, whole_number
from tidings.console.state import Console
from tidings.console.views import event_view

__all__ = ["event_routes"]

_TREE_LIMIT = 1000


def event_routes(console: Console) -> list[Route]:
    async def all_events(request: Request) -> Response:
        filters = Filters(request.query_params)
        limit = limit_of(request.query_params, console.page_size)
        after = whole_number(request.query_params.get("after"), "after")

        records = await console.log.read_all(
            after=after,
            limit=limit + 1,
            categories=filters.categories or None,
            types=filters.types or None,
        )
        head = await console.log.head_position()
        more, records = len(records) > limit, records[:limit]
        fields = [*filters.query] + ([("limit", str(limit))] if limit != console.page_size else [])
        next_url = (
            f"?{urlencode([*fields, ('after', str(records[-1].position))])}" if more else None
        )
        latest_url = f"?{urlencode([*fields, ('after', str(max(0, head - limit)))])}"
        return console.page(
            request,
            "all.html",
            events=[event_view(record) for record in records],
            filters=filters,
            head=head,
            after=after,
            next_url=next_url,
            first_url=f"?{urlencode(fields)}",
            latest_url=None if filters.query else latest_url,
        )

    async def streams(request: Request) -> Response:
        query = request.query_params
        category = text_of(query.get("category"), "category")
        if category is not None and "-" in category:
            raise ConsoleError(400, f"{category!r} is not a category: a category has no dash")
        limit = limit_of(query, console.page_size)
        after = text_of(query.get("after"), "after (a stream name)")
        found = await console.log.list_streams(category, after=after, limit=limit + 1)
        more, found = len(found) > limit, found[:limit]
        fields = [("category", category)] if category else []
        next_url = f"?{urlencode([*fields, ('after', found[-1].name)])}" if more else None
        return console.page(
            request, "streams.html", streams=found, category=category or "", next_url=next_url
        )

    async def stream(request: Request) -> Response:
        name = name_of(request.path_params["name"], "a stream name")
        query = request.query_params
        start = whole_number(query.get("from"), "from (a version)", default=1, minimum=1)
        limit = limit_of(query, console.page_size)

        version = await console.log.stream_version(name)
        if version is None:
            raise ConsoleError(404, f"no stream named {name!r}")
        records = await console.log.read_stream(name, from_version=start, limit=limit + 1)
        more, records = len(records) > limit, records[:limit]
        next_url = f"?{urlencode({'from': records[-1].version + 1})}" if more else None
        return console.page(
            request,
            "stream.html",
            name=name,
            version=version,
            events=[event_view(record) for record in records],
            next_url=next_url,
        )

    async def event(request: Request) -> Response:
        position = position_of(request.path_params["position"])

        found = await console.log.read_all(after=position - 1, limit=1)
        if not found or found[0].position != position:
            raise ConsoleError(404, f"no event at position {position}")
        record = found[0]
        related = await console.log.read_correlated(record.correlation_id, limit=_TREE_LIMIT)
        by_id = {each.event_id: each for each in related}
        cause = None if record.causation_id is None else by_id.get(record.causation_id)
        caused = [each for each in related if each.causation_id == record.event_id]
        tree = causation_tree(related)
        return console.page(
            request,
            "event.html",
            event=event_view(record),
            cause=None if cause is None else event_view(cause),
            caused=[event_view(each) for each in caused],
            tree=tree,
            tree_cut=len(related) >= _TREE_LIMIT,
            tree_limit=_TREE_LIMIT,
            graph=causation_graph(tree, position),
            graph_limit=GRAPH_LIMIT,
            messages=count_nodes(tree),
        )

    return [
        Route("/", all_events, name="all"),
        Route("/streams", streams, name="streams"),
        Route("/streams/{name:path}", stream, name="stream"),
        Route("/events/{position}", event, name="event"),
    ]
