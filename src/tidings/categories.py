"""Stream categories and who writes them: an aggregate type, a saga or a process manager.

Each of them keeps its state in streams `<category>-<id>`. Two kinds sharing
a category would read each other's events as their own (a saga recovering
an aggregate's stream fails on every start), so the second to be defined is
refused at once, naming the first.
"""

from __future__ import annotations

import threading

from tidings.errors import ConfigurationError

__all__ = ["claim_category"]

_claimed: dict[str, tuple[str, str]] = {}
_lock = threading.Lock()


def claim_category(category: str, kind: str, owner: str) -> None:
    """Record that `owner`, of `kind` ("aggregate", "saga", ...), writes streams of `category`.

    Several owners of one kind may share a category (a class defined again,
    a saga built twice); owners of two kinds may not.
    """
    with _lock:
        found = _claimed.setdefault(category, (kind, owner))
    if found[0] != kind:
        raise ConfigurationError(
            f"{kind} {owner} writes streams of category {category!r}, which {found[0]} "
            f"{found[1]} writes already: give one of them another name"
        )
