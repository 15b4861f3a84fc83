"""What every page of one console shares: its store's access, its rebuilds, settings, templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tidings.console.access import Access
from tidings.console.errors import ConsoleError
from tidings.console.rebuilds import Rebuilds
from tidings.console.security import csrf_matches, new_csrf_token

__all__ = ["Console"]

_HERE = Path(__file__).parent


class Console:
    """One console's store, projections, dead letters and settings, as its pages use them."""

    def __init__(
        self,
        access: Access,
        *,
        read_only: bool,
        page_size: int,
        tail_seconds: float,
        tail_interval: float,
        title: str,
    ) -> None:
        self.log = access.log
        self.letters = access.letters
        self.runner = access.runner
        self.bus = access.bus
        self._rebuilder = access.rebuilder
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

    async def _rebuild(self, name: str, progress: Callable[[int, int], None]) -> None:
        await self._rebuilder().rebuild(name, progress)

    def base(self, request: Request) -> str:
        """The path the console is mounted at, for its links ("" when it is the whole app)."""
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/")

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: object
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
