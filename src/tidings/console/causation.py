"""The causation tree of a request: each stored event under the stored event that caused it."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from tidings.store import RecordedEvent

__all__ = ["CauseNode", "causation_tree"]


@dataclass(slots=True)
class CauseNode:
    """One message of the tree: a stored event (`event`), or a cause not stored (a command).

    The record itself, not its page view: a tree of a thousand events shows
    their types and places, and need not format their data.
    """

    message_id: str
    event: RecordedEvent | None
    children: list[CauseNode] = field(default_factory=list)


def causation_tree(records: list[RecordedEvent]) -> list[CauseNode]:
    """The roots of the tree `records` (one correlation id's, in `$all` order) make.

    A cause that is not among them (the request's command, as a rule) is a
    root of its own, shown by id; a cycle of causes, which only damaged data
    could hold, is broken where it closes.
    """
    by_id = {record.event_id: record for record in records}
    nodes: dict[UUID, CauseNode] = {}
    roots: list[CauseNode] = []
    placing: set[UUID] = set()

    def node_for(message_id: UUID) -> CauseNode:
        found = nodes.get(message_id)
        if found is not None:
            return found
        record = by_id.get(message_id)
        node = CauseNode(str(message_id), record)
        if record is None or record.causation_id is None:
            roots.append(node)
        else:
            placing.add(message_id)
            cause = record.causation_id
            if cause in placing and cause not in nodes:
                roots.append(node)
            else:
                node_for(cause).children.append(node)
        nodes[message_id] = node
        return node

    for record in records:
        node_for(record.event_id)
    return roots
