"""What every page of one console shares: the store, its runner and letters, settings, templates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from uuid import UUID

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tidings._sync.bus import MessageBus
from tidings.console.errors import ConsoleError
from tidings.console.rebuilds import Rebuilds
from tidings.console.security import csrf_matches, new_csrf_token
from tidings.dead_letters import DeadLetter
from tidings.projections import Projection, ProjectionRunner
from tidings.store import EventStore

__all__ = ["Console", "LetterStore"]

T = TypeVar("T")

_HERE = Path(__file__).parent


class LetterStore(Protocol):
    """The dead letters the console lists and acts on: `SQLDeadLetters` or `DeadLetters`."""

    def list(
        self, *, handler: str | None = None, after: UUID | None = None, limit: int | None = None
    ) -> list[DeadLetter]: ...

    def get(self, letter_id: UUID) -> DeadLetter: ...

    def remove(self, letter_id: UUID) -> DeadLetter: ...

    def count(self, *, handler: str | None = None) -> int: ...


class Console:
    """One console's store, projections, dead letters and settings, as its pages use them."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        bus: MessageBus | None,
        dead_letters: LetterStore | None,
        read_only: bool,
        page_size: int,
        tail_seconds: float,
        tail_interval: float,
        title: str,
    ) -> None:
        self.store = store
        self.projections = list(projections)
        self.runner = ProjectionRunner(store, self.projections, poll_interval=0.2)
        found: Any = dead_letters if dead_letters is not None else self.runner.dead_letters
        self.letters: LetterStore = found
        self.bus = bus
        self.read_only = read_only
        self.page_size = page_size
        self.tail_seconds = tail_seconds
        self.tail_interval = tail_interval
        self.title = title
        self.csrf = new_csrf_token()
        self.rebuilds = Rebuilds(self._rebuild)
        self.templates = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _rebuild(self, name: str, progress: Callable[[int, int], None]) -> None:
        # A runner of its own: the rebuild holds the projection's lease while it replays.
        ProjectionRunner(self.store, self.projections, poll_interval=0.2).rebuild(name, progress)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread: the store's calls block."""
        return await anyio.to_thread.run_sync(partial(fn, *args))

    def base(self, request: Request) -> str:
        """The path the console is mounted at, for its links ("" when it is the whole app)."""
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/")

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            base=self.base(request),
            csrf=self.csrf,
            read_only=self.read_only,
            title=self.title,
            notice=request.query_params.get("notice"),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def check_action(self, fields: dict[str, str]) -> None:
        """Refuse an action in read-only mode (403), or without the CSRF token (403)."""
        if self.read_only:
            raise ConsoleError(403, "this console is read-only: actions are turned off")
        if not csrf_matches(self.csrf, fields.get("csrf")):
            raise ConsoleError(403, "the form's CSRF token is missing or wrong: reload the page")
