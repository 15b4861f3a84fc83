"""`tidings streams`: the streams of the store, a page at a time, in name order."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from tidings.cli.options import JsonOption, LimitOption, StoreOption, check_categories, opened_store
from tidings.cli.output import stdout
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["streams"]


def streams(
    category: Annotated[
        str | None,
        typer.Option("--category", "-c", metavar="CATEGORY", help="Only streams of this category."),
    ] = None,
    after: Annotated[
        str | None, typer.Option("--after", metavar="STREAM", help="Start after this stream name.")
    ] = None,
    limit: LimitOption = 100,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="Include soft-deleted streams.")
    ] = False,
    json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """List streams in name order, with version and deleted flag."""
    check_categories(None if category is None else [category])
    with opened_store(store) as event_store:
        found = event_store.list_streams(
            category, after=after, limit=limit, include_deleted=deleted
        )
    if json:
        for info in found:
            line = {
                "stream": info.name,
                "category": info.category,
                "version": info.version,
                "first_version": info.first_version,
                "deleted": info.deleted,
            }
            sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
        return
    console = stdout()
    if not found:
        console.print(Text("no streams", style="dim"))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("stream", overflow="fold")
    table.add_column("category", overflow="fold")
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("deleted", no_wrap=True)
    for info in found:
        table.add_row(
            info.name, info.category, str(info.version), "deleted" if info.deleted else ""
        )
    console.print(table)
    if len(found) == limit:
        console.print(Text(f"more: --after {shlex.quote(found[-1].name)}", style="dim"))
