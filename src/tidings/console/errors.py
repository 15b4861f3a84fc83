"""What a page answers when a request cannot be served: a status and a message, as a page."""

from __future__ import annotations

__all__ = ["ConsoleError"]


class ConsoleError(Exception):
    """A request the console refuses (4xx), with the message its error page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
