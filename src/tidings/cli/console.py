"""`tidings console`: serve the web console of a store with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from tidings.cli.group import fail
from tidings.cli.options import (
    AppOption,
    built_bus,
    check_store_url,
    is_async_factory,
    load_app_factory,
    opened_store,
)
from tidings.cli.projections import PROJECTIONS_ENV, load_projections

__all__ = ["TOKEN_ENV", "console"]

TOKEN_ENV = "TIDINGS_CONSOLE_TOKEN"
"""The environment variable holding the console's access token when no option gives it."""

_LOCAL = ("127.0.0.1", "localhost", "::1")


def console(
    store: Annotated[
        str,
        typer.Argument(
            metavar="STORE_URL",
            callback=check_store_url,
            help="Event store: sqlite:///path.db, a file path, postgresql://...?schema=name.",
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, metavar="PORT", help="Port to listen on.")
    ] = 8700,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            metavar="TOKEN",
            help="Access token each browser shows once (?token=...); needed off 127.0.0.1.",
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every action.")
    ] = False,
    projections: Annotated[
        str | None,
        typer.Option(
            "--projections",
            "-p",
            envvar=PROJECTIONS_ENV,
            show_envvar=True,
            metavar="MODULE:ATTRIBUTE",
            help="The projections, as for `tidings projections`: their status and actions.",
        ),
    ] = None,
    app: AppOption = None,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="uvicorn's log level.")
    ] = "warning",
) -> None:
    """Serve the web console of STORE_URL: the log, projections, dead letters, a live tail.

    It listens on 127.0.0.1 unless --host says otherwise; any other interface
    needs an access token (--token or TIDINGS_CONSOLE_TOKEN).
    """
    if host not in _LOCAL and not token:
        raise typer.BadParameter(
            f"listening on {host} needs an access token (--token or {TOKEN_ENV})",
            param_hint="--host",
        )
    try:
        import uvicorn

        from tidings.console import console_app
    except ModuleNotFoundError as exc:
        fail(f'console needs the console extra: pip install "tidings[console]" ({exc})')
    with opened_store(store) as event_store:
        found = [] if projections is None else load_projections(projections, event_store)
        bus = None
        if app is not None:
            factory = load_app_factory(app)
            if is_async_factory(factory):
                raise typer.BadParameter(
                    f"{app} is async: the console retries on a blocking bus "
                    "(a plain def taking an EventStore)",
                    param_hint="--app",
                )
            bus = built_bus(app, factory, event_store)
        application = console_app(
            event_store,
            found,
            bus=bus,
            read_only=read_only,
            token=token or None,
            # Only the local names: no other site's DNS name can point here. (The check
            # cannot read an IPv6 Host header, so ::1 goes without it.)
            allowed_hosts=["127.0.0.1", "localhost"] if host in _LOCAL[:2] else None,
        )
        shown = f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"
        typer.echo(f"tidings console on {shown}" + ("?token=..." if token else ""), err=True)
        uvicorn.run(application, host=host, port=port, log_level=log_level)
