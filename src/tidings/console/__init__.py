"""The web console: browse the log, follow causation, run projections and dead letters, tail live.

`console_app(store, ...)` returns a Starlette application, to serve alone
(`tidings console STORE_URL`) or to mount in an application's own ASGI app,
over a blocking or an async store. `LetterStore` and `AsyncLetterStore` say
what dead letters it takes beside each kind. Needs the `console` extra
(`pip install "tidings[console]"`).
"""

from tidings.console.access import AsyncLetterStore, LetterStore
from tidings.console.app import console_app

__all__ = ["AsyncLetterStore", "LetterStore", "console_app"]
