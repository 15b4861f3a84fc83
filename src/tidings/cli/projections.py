"""`tidings projections`: status, rebuild, pause and resume of the projections of an application.

The commands find the application's projections through an import path,
`--projections module:attribute` (or the `TIDINGS_PROJECTIONS` environment
variable): the attribute is a sequence of `Projection` objects, or a function
that takes the opened store and returns them. Their state lives in the
store's database, so these commands act on runners in other processes: a
paused projection stops after its current batch, a rebuild requested here is
carried out by the runner that holds the projection (or here, when none does).
The event a parked projection stopped on is a parked letter in `tidings dlq
list`: `resume` (or `tidings dlq retry`) tries it again, `tidings dlq drop`
skips it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from tidings.cli.group import TidingsGroup
from tidings.cli.options import StoreOption, named_attribute, opened_store
from tidings.projections import Projection, ProjectionRunner, ProjectionStopped
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["PROJECTIONS_ENV", "load_projections", "projections_app"]

PROJECTIONS_ENV = "TIDINGS_PROJECTIONS"
"""The environment variable naming the projections (`module:attribute`) when no option does."""

projections_app = typer.Typer(
    cls=TidingsGroup,
    name="projections",
    help="Show, rebuild, pause and resume projections.",
    no_args_is_help=True,
)

ProjectionsOption = Annotated[
    str,
    typer.Option(
        "--projections",
        "-p",
        envvar=PROJECTIONS_ENV,
        show_envvar=True,
        metavar="MODULE:ATTRIBUTE",
        help="The projections: a sequence of Projection, or a function of the store giving one.",
    ),
]
NameArgument = Annotated[str, typer.Argument(help="The projection's name.", show_default=False)]


@projections_app.command()
def status(
    projections: ProjectionsOption,
    store: StoreOption = DEFAULT_STORE_URL,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Each projection's state, position, the log's head, lag (events to go) and last error.

    The state is "stopped" when no runner holds the projection's lease, and
    "stale" when the one holding it has missed its heartbeats (likely gone);
    each line names the runner holding the lease (`owner`) and how long ago
    the last runner of it was heard of.

    When an open transaction holds the log's readers back, each line also
    says how many committed events it hides and for how long.
    """
    with _runner(store, projections) as runner:
        for found in runner.status():
            if as_json:
                fields = {
                    "name": found.name,
                    "state": str(found.state),
                    "position": found.position,
                    "head": found.head,
                    "lag": found.lag,
                    "error": found.error,
                    "failed_position": found.failed_position,
                    "held_back": found.held_back,
                    "held_for": found.held_for,
                    "owner": found.owner,
                    "heartbeat_age": found.heartbeat_age,
                    "partition": found.partition,
                    "partitions": found.partitions,
                }
                typer.echo(json.dumps(fields))
                continue
            line = f"{found.name}  {found.state}  position {found.position}  lag {found.lag}"
            if found.held_back:
                held_for = "?" if found.held_for is None else f"{found.held_for:.0f}"
                line += f"  held back {found.held_back} for {held_for} s"
            if found.error:
                line += f"  failed at {found.failed_position}: {found.error}"
            if found.owner is not None:
                line += f"  owner {found.owner}"
            if found.heartbeat_age is not None and found.owner != "inline":
                line += f"  heartbeat {found.heartbeat_age:.1f} s ago"
            typer.echo(line)


@projections_app.command()
def rebuild(
    name: NameArgument, projections: ProjectionsOption, store: StoreOption = DEFAULT_STORE_URL
) -> None:
    """Empty a projection's read model and replay the log into it, showing progress."""
    with _runner(store, projections) as runner:
        _known(runner, name)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"rebuilding {name}", total=None)

            def report(position: int, head: int) -> None:
                bar.update(task, completed=position, total=max(head, position, 1))

            try:
                runner.rebuild(name, report)
            except ProjectionStopped as exc:
                typer.echo(f"tidings projections rebuild: error: {exc}", err=True)
                raise typer.Exit(1) from None
        [done] = [found for found in runner.status() if found.name == name]
        typer.echo(f"{name}: rebuilt, at position {done.position}")


@projections_app.command()
def pause(
    name: NameArgument, projections: ProjectionsOption, store: StoreOption = DEFAULT_STORE_URL
) -> None:
    """Stop a projection after its current batch, until `resume`."""
    with _runner(store, projections) as runner:
        _known(runner, name)
        runner.pause(name)
        typer.echo(f"{name}: paused")


@projections_app.command()
def resume(
    name: NameArgument, projections: ProjectionsOption, store: StoreOption = DEFAULT_STORE_URL
) -> None:
    """Run a paused or parked projection again (a parked one retries the event it failed on)."""
    with _runner(store, projections) as runner:
        _known(runner, name)
        runner.resume(name)
        typer.echo(f"{name}: running")


def load_projections(spec: str, store: Any) -> list[Projection]:
    """The projections `module:attribute` names; exit 2 saying why when it names none."""
    found: Any = named_attribute(spec, "--projections")
    if callable(found) and not isinstance(found, Projection | type):
        found = found(store)
    if isinstance(found, Projection):
        found = [found]
    if not isinstance(found, list | tuple) or not all(isinstance(p, Projection) for p in found):
        raise typer.BadParameter(
            f"{spec} is not a sequence of projections", param_hint="--projections"
        )
    return list(found)


@contextmanager
def _runner(url: str, spec: str) -> Iterator[ProjectionRunner]:
    with opened_store(url) as store:
        yield ProjectionRunner(store, load_projections(spec, store), poll_interval=0.2)


def _known(runner: ProjectionRunner, name: str) -> None:
    if name not in runner.projections:
        known = ", ".join(sorted(runner.projections)) or "none"
        raise typer.BadParameter(
            f"no projection named {name!r} (known: {known})", param_hint="NAME"
        )
