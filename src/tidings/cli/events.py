"""`tidings events`: a page of `$all`, or of one stream, as a table or JSON lines."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

import typer
from rich.text import Text

from tidings.cli.options import (
    AfterOption,
    AppOption,
    CategoryOption,
    ImportOption,
    JsonOption,
    LimitOption,
    StoreOption,
    TypeOption,
    check_categories,
    check_types,
    decoding,
    opened_store,
)
from tidings.cli.output import event_table, stdout, write_json_lines
from tidings.store import EventStore, RecordedEvent
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["events"]


def events(
    stream: Annotated[
        str | None,
        typer.Option("--stream", "-s", metavar="STREAM", help="Only this stream, by version."),
    ] = None,
    after: AfterOption = 0,
    limit: LimitOption = 100,
    category: CategoryOption = None,
    event_type: TypeOption = None,
    json: JsonOption = False,
    modules: ImportOption = None,
    app: AppOption = None,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """List events of $all or of one stream, a page at a time.

    Payloads are decoded by their event classes when --import loads them, or
    by the application's codec and upcasters with --app; else shown as stored.
    What either cannot decode is shown as stored, marked undecoded.
    """
    categories, types = check_categories(category), check_types(event_type)
    if stream is not None and categories:
        raise typer.BadParameter(
            "not with --stream: one stream has one category", param_hint="--category"
        )
    if stream == "":
        raise typer.BadParameter("a stream name is not empty", param_hint="--stream")
    shown = decoding(modules, app, store)
    with opened_store(store) as event_store:
        if stream is None:
            records = event_store.read_all(
                after=after, limit=limit, categories=categories, types=types
            )
        else:
            records = _stream_page(event_store, stream, after, limit, types)
    if json:
        write_json_lines(records, shown)
        return
    console = stdout()
    if not records:
        console.print(Text("no events", style="dim"))
        return
    console.print(event_table(records, shown, console.width))
    if len(records) == limit:
        last = records[-1].version if stream is not None else records[-1].position
        console.print(Text(f"more: --after {last}", style="dim"))


def _stream_page(
    store: EventStore, stream: str, after: int, limit: int, types: Collection[str] | None
) -> list[RecordedEvent]:
    """Up to `limit` events of `stream` after version `after`, of `types` if given."""
    found: list[RecordedEvent] = []
    while len(found) < limit:
        batch = store.read_stream(stream, from_version=after + 1, limit=limit)
        if not batch:
            break
        found.extend(record for record in batch if types is None or record.type in types)
        after = batch[-1].version
    return found[:limit]
