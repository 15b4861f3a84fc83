"""`tidings serve`: run an ASGI application with uvicorn, on the store given to the CLI."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from tidings.cli.group import fail
from tidings.cli.options import StoreOption
from tidings.store.urls import DEFAULT_STORE_URL, STORE_URL_ENV

__all__ = ["serve"]


def serve(
    app: Annotated[str, typer.Argument(help="The ASGI application, as module:attribute.")],
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, metavar="PORT", help="Port to listen on.")
    ] = 8000,
    app_dir: Annotated[
        str,
        typer.Option("--app-dir", metavar="DIR", help="Directory to import the application from."),
    ] = ".",
    log_level: Annotated[
        str,
        typer.Option("--log-level", metavar="LEVEL", help="uvicorn's log level: debug, info..."),
    ] = "info",
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Serve an ASGI app (module:attribute) with uvicorn.

    The app finds the store URL in the TIDINGS_STORE environment variable.
    """
    module, _, attribute = app.partition(":")
    if not module or not attribute:
        raise typer.BadParameter(f"{app!r} is not module:attribute", param_hint="APP")
    try:
        import uvicorn
        from uvicorn.importer import ImportFromStringError, import_from_string
    except ModuleNotFoundError as exc:
        fail(f'serve needs the web extra: pip install "tidings[web]" ({exc})')
    # Set before the import: an application may read it when its module loads.
    os.environ[STORE_URL_ENV] = store
    sys.path.insert(0, os.path.abspath(app_dir))
    try:
        application: Any = import_from_string(app)
    except ImportFromStringError as exc:
        raise typer.BadParameter(str(exc), param_hint="APP") from None
    uvicorn.run(application, host=host, port=port, log_level=log_level)
