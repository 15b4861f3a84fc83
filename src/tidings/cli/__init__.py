"""The `tidings` CLI: the log, request traces, projections, dead letters, schema, serve, console.

Every command takes `--store URL` (default: `TIDINGS_STORE`, else the SQLite
file `var/tidings.db`). Bad arguments exit with status 2 and an unreachable
store with 1, each with a one-line reason on stderr.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from tidings.cli.console import console
from tidings.cli.db import db_app
from tidings.cli.dlq import dlq_app
from tidings.cli.events import events
from tidings.cli.group import TidingsGroup
from tidings.cli.projections import projections_app
from tidings.cli.serve import serve
from tidings.cli.streams import streams
from tidings.cli.tail import tail
from tidings.cli.trace import trace
from tidings.cli.transports import consume, relay
from tidings.cli.worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    cls=TidingsGroup,
    name="tidings",
    help="Read and manage a tidings event store.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"tidings {version('tidings')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """The options before a command; `--version` is handled by its callback, eagerly."""


app.command()(events)
app.command()(tail)
app.command()(streams)
app.command()(trace)
app.command()(serve)
app.command()(relay)
app.command()(consume)
app.command()(worker)
app.command()(console)
app.add_typer(db_app)
app.add_typer(dlq_app)
app.add_typer(projections_app)


def main() -> None:
    """The `tidings` console script."""
    app()
