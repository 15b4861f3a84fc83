"""`tidings trace`: the causation tree of one request, from the events it led to."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer
from rich.text import Text
from rich.tree import Tree

from tidings.cli.group import fail
from tidings.cli.options import (
    AppOption,
    ImportOption,
    StoreOption,
    decoding,
    opened_store,
    parse_uuid,
)
from tidings.cli.output import Decoding, payload_text, stdout, time_text
from tidings.store import RecordedEvent
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["causation_tree", "trace"]


def trace(
    correlation_id: Annotated[
        str, typer.Argument(help="The correlation id shared by the request's messages.")
    ],
    modules: ImportOption = None,
    app: AppOption = None,
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Draw the causation tree of one request.

    Shows every stored event with this correlation id, nested under the
    message that caused it; causes that are not stored (commands) appear by id.
    Payloads are decoded as by `tidings events`.
    """
    correlation = parse_uuid(correlation_id, "CORRELATION_ID")
    shown = decoding(modules, app, store)
    with opened_store(store) as event_store:
        records = event_store.read_correlated(correlation)
    if not records:
        fail(f"no stored event has correlation id {correlation}")
    stdout().print(causation_tree(correlation, records, shown))


def causation_tree(correlation: UUID, records: list[RecordedEvent], decoding: Decoding) -> Tree:
    """Each event under the stored event that caused it; causes that are not stored (commands,
    as a rule) become nodes of their own, by id, under the root."""
    tree = Tree(Text(f"correlation {correlation}", style="bold"))
    by_id = {record.event_id: record for record in records}
    nodes: dict[UUID, Tree] = {}
    placing: set[UUID] = set()

    def node_for(message_id: UUID) -> Tree:
        node = nodes.get(message_id)
        if node is not None:
            return node
        record = by_id.get(message_id)
        if record is None:
            role = "the request" if message_id == correlation else "a message"
            node = tree.add(Text(f"{message_id}  ({role}, not stored)", style="yellow"))
        else:
            placing.add(message_id)
            cause = record.causation_id
            if cause is None:
                parent = tree
            elif cause in placing and cause not in nodes:
                parent = tree  # a cycle of causes, which only damaged data can hold
            else:
                parent = node_for(cause)
            node = parent.add(_label(record, decoding))
        nodes[message_id] = node
        return node

    for record in records:  # in position order, so siblings read in the order they happened
        node_for(record.event_id)
    return tree


def _label(record: RecordedEvent, decoding: Decoding) -> Text:
    return Text.assemble(
        (record.type, "green"),
        "  ",
        (f"{record.stream}@{record.version}", "cyan"),
        "  ",
        (f"#{record.position}", "bold"),
        "  ",
        (time_text(record), "dim"),
        "  ",
        (str(record.event_id), "dim"),
        "  ",
        payload_text(record, decoding),
    )
