"""Reading the query and form fields of a request: every bad value is a 400 with a message."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl
from uuid import UUID

from starlette.datastructures import QueryParams

from tidings.console.errors import ConsoleError

__all__ = [
    "Filters",
    "form_fields",
    "letter_id",
    "limit_of",
    "name_of",
    "position_of",
    "text_of",
    "whole_number",
]

MAX_LIMIT = 500
LARGEST = 2**63 - 1
"""The largest position or version a store holds (a signed 64-bit integer)."""


def whole_number(text: str | None, what: str, default: int = 0, minimum: int = 0) -> int:
    """`text` as a whole number of at least `minimum`; `default` when absent or empty."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConsoleError(400, f"{what} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise ConsoleError(400, f"{what} must be at least {minimum}, not {value}")
    if value > LARGEST:
        raise ConsoleError(400, f"{what} must be at most {LARGEST}, not {value}")
    return value


def name_of(text: str, what: str) -> str:
    """`text` as a name to look for; a NUL in it is a 400.

    No store holds a name with a NUL (PostgreSQL cannot even compare one), so
    asking for one is a mistake of the address, not a question with no answer.
    """
    if "\x00" in text:
        raise ConsoleError(400, f"{what} {text!r} holds a NUL character, which no name has")
    return text


def text_of(text: str | None, what: str) -> str | None:
    """`text` as a name to look for (see `name_of`), None when absent or empty."""
    return name_of(text, what) if text else None


def position_of(text: str) -> int:
    """A position in `$all`: a whole number from 1."""
    return whole_number(text, "a position", minimum=1)


def limit_of(query: QueryParams, default: int) -> int:
    limit = whole_number(query.get("limit"), "limit", default=default, minimum=1)
    if limit > MAX_LIMIT:
        raise ConsoleError(400, f"limit must be at most {MAX_LIMIT}, not {limit}")
    return limit


def letter_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ConsoleError(400, f"{text!r} is not a dead letter id (a UUID)") from None


class Filters:
    """The category and type filters of a listing: repeatable, or comma-separated in one field."""

    def __init__(self, query: QueryParams) -> None:
        self.categories = _names(query.getlist("category"))
        self.types = _names(query.getlist("type"))
        for category in self.categories:
            if "-" in category:
                raise ConsoleError(
                    400,
                    f"{category!r} is not a category: a category is the part of a stream name "
                    "before its first dash, so it has no dash",
                )

    @property
    def query(self) -> list[tuple[str, str]]:
        """The filters as query fields, for the links to other pages of the same listing."""
        fields = []
        if self.categories:
            fields.append(("category", ",".join(self.categories)))
        if self.types:
            fields.append(("type", ",".join(self.types)))
        return fields

    @property
    def category_text(self) -> str:
        return ", ".join(self.categories)

    @property
    def type_text(self) -> str:
        return ", ".join(self.types)


def _names(values: list[str]) -> list[str]:
    names = [name.strip() for value in values for name in value.split(",")]
    if any(not name for name in names) and any(value.strip() for value in values):
        raise ConsoleError(400, "a filter lists names separated by commas, none of them empty")
    return [name for name in names if text_of(name, "a filter's name")]


def form_fields(body: bytes) -> Mapping[str, str]:
    """The fields of a URL-encoded form body (the console's forms post nothing else)."""
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise ConsoleError(400, "the form is not UTF-8 text") from None
