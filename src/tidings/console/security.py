"""Who may use the console: an access token when one is set, and a CSRF token on every action.

With a token, a request shows it once (`?token=...`, or `Authorization:
Bearer ...`) and gets a cookie that carries it from then on. Every action is
a POST whose form carries the console's CSRF token, which only its own pages
hold: a page of another site cannot post one.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

__all__ = ["COOKIE", "TokenGuard", "csrf_matches", "new_csrf_token"]

COOKIE = "tidings_console"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


Render = Callable[[Request, int, str], Awaitable[Response]]


class TokenGuard:
    """Refuses (401) every request that does not show the access token, as ASGI middleware."""

    def __init__(self, token: str, refuse: Render) -> None:
        self.token = token
        self.refuse = refuse

    def shown(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        return any(
            given is not None and hmac.compare_digest(self.token.encode(), given.encode())
            for given in (cookie, bearer)
        )

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(self.token.encode(), given.encode()):
                return await self.refuse(request, 401, "wrong access token")
            # Drop the token from the address bar and history, keep it in a cookie.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            url = request.url.remove_query_params("token").include_query_params(**dict(rest))
            response = RedirectResponse(str(url), status_code=303)
            root = request.scope.get("root_path", "") or "/"
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path=root)
            return response
        if not self.shown(request):
            return await self.refuse(
                request, 401, "this console needs its access token: open it with ?token=..."
            )
        return await call_next(request)
