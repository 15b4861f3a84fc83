"""One parameter style for application SQL on every backend: `?`, as SQLite writes it.

A read model's statements run on SQLite and on PostgreSQL unchanged when
they are given to a store transaction's `execute`/`query`: on PostgreSQL,
whose driver takes `%s`, each `?` outside quotes and comments becomes `%s`
and each `%` is doubled, so text like `'100%'` keeps its meaning. Statements
sent straight to the server (batched ones) number their parameters instead:
`$1`, `$2`, ... with `%` left as it is.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["qmark_to_format", "qmark_to_numbered"]


@lru_cache(maxsize=1024)
def qmark_to_format(statement: str) -> str:
    """`statement` with `?` placeholders as psycopg's `%s` ones (quoted text left alone)."""
    return _converted(statement, numbered=False)[0]


@lru_cache(maxsize=1024)
def qmark_to_numbered(statement: str) -> tuple[str, int]:
    """`statement` with `?` placeholders as PostgreSQL's `$1`, `$2`, ..., and how many there are."""
    return _converted(statement, numbered=True)


def _converted(statement: str, numbered: bool) -> tuple[str, int]:
    percent = "%" if numbered else "%%"
    out: list[str] = []
    count = 0
    index, size = 0, len(statement)
    while index < size:
        char = statement[index]
        if char in "'\"":  # a string literal or a quoted identifier: copied to its end
            end = statement.find(char, index + 1)
            while end != -1 and statement.startswith(char * 2, end):  # '' inside stays in
                end = statement.find(char, end + 2)
            end = size if end == -1 else end + 1
            out.append(statement[index:end].replace("%", percent))
            index = end
        elif statement.startswith("--", index):  # a comment to the end of the line
            end = statement.find("\n", index)
            end = size if end == -1 else end
            out.append(statement[index:end].replace("%", percent))
            index = end
        else:
            if char == "?":
                count += 1
                out.append(f"${count}" if numbered else "%s")
            else:
                out.append(percent if char == "%" else char)
            index += 1
    return "".join(out), count
