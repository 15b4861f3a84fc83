"""The web console: browse the log, follow causation, run projections and dead letters, tail live.

`console_app(store, ...)` returns a Starlette application, to serve alone
(`tidings console STORE_URL`) or to mount in an application's own ASGI app.
Needs the `console` extra (`pip install "tidings[console]"`).
"""

from tidings.console.app import console_app

__all__ = ["console_app"]
