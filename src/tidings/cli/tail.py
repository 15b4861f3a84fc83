"""`tidings tail`: follow `$all` as events commit, until interrupted."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from tidings.cli.options import (
    AppOption,
    CategoryOption,
    ImportOption,
    JsonOption,
    StoreOption,
    TypeOption,
    check_categories,
    check_types,
    decoding,
    opened_store,
)
from tidings.cli.output import event_text, stdout, write_json_lines
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["tail"]

_BATCH = 500


def tail(
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Print the whole log first, then follow.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.01, metavar="SECONDS", help="Time between polls of the store."
        ),
    ] = 0.2,
    category: CategoryOption = None,
    event_type: TypeOption = None,
    json: JsonOption = False,
    modules: ImportOption = None,
    app: AppOption = None,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Follow $all live, printing events as they commit; Ctrl-C stops.

    Starts at the head of the log, or at its beginning with --from-start, and
    polls the store every --interval seconds. Payloads are decoded as by
    `tidings events`.
    """
    categories, types = check_categories(category), check_types(event_type)
    shown = decoding(modules, app, store)
    console = stdout()
    with opened_store(store) as event_store:
        try:
            position = 0 if from_start else event_store.head_position()
            typer.echo(f"following from position {position}", err=True)
            while True:
                records = event_store.read_all(
                    after=position, limit=_BATCH, categories=categories, types=types
                )
                if json:
                    write_json_lines(records, shown)
                else:
                    for record in records:
                        console.print(event_text(record, shown), soft_wrap=True)
                    sys.stdout.flush()
                if records:
                    position = records[-1].position
                if len(records) < _BATCH:
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how tail ends
