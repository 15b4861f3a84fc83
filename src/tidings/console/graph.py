"""The causation graph of a request, laid out for an SVG drawing: cause on the left, effects right.

The causation tree (`causation_tree`) is a forest, each message under its one
cause, so a tidy tree layout is enough: each leaf takes the next row, a cause
sits level with the middle of its effects, and each generation is a column.
Only coordinates and text are made here; the template writes the SVG, so
every text in it is escaped by the same autoescaping as the rest of the page.
Labels are cut to what fits a box, and each box is an SVG viewport of its own,
which clips what still overflows it (wide characters).
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.console.causation import CauseNode

__all__ = ["GRAPH_LIMIT", "Graph", "GraphEdge", "GraphNode", "causation_graph", "count_nodes"]

GRAPH_LIMIT = 60
"""The most messages a graph draws; a larger request is shown as the text tree alone."""

NODE_WIDTH = 210
NODE_HEIGHT = 36
_COLUMN = NODE_WIDTH + 46
_ROW = NODE_HEIGHT + 14
_MARGIN = 8
_LABEL = 27  # characters of a label that fit a node's width at the drawing's font size


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One message drawn: a stored event (with its `position`) or a cause not stored (a command)."""

    x: int
    y: int
    label: str
    detail: str
    title: str
    position: int | None
    current: bool


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An arrow from a cause to its effect, as an SVG path (numbers only)."""

    path: str


@dataclass(frozen=True, slots=True)
class Graph:
    """The whole drawing: its size, the messages and the arrows between them."""

    width: int
    height: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def count_nodes(roots: list[CauseNode]) -> int:
    return sum(1 + count_nodes(root.children) for root in roots)


def _short(text: str) -> str:
    return text if len(text) <= _LABEL else text[: _LABEL - 1] + "…"


def causation_graph(roots: list[CauseNode], current: int) -> Graph | None:
    """The drawing of the forest `roots`, the event at `current` marked; None past `GRAPH_LIMIT`."""
    if count_nodes(roots) > GRAPH_LIMIT:
        return None
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    rows = 0
    deepest = 0

    def place(node: CauseNode, depth: int) -> int:
        """Lay `node` and its effects out; the y of its top edge."""
        nonlocal rows, deepest
        deepest = max(deepest, depth)
        x = _MARGIN + depth * _COLUMN
        if node.children:
            tops = [place(child, depth + 1) for child in node.children]
            y = (tops[0] + tops[-1]) // 2
            for top in tops:
                edges.append(_edge(x + NODE_WIDTH, y, x + _COLUMN, top))
        else:
            y = _MARGIN + rows * _ROW
            rows += 1
        event = node.event
        if event is None:
            nodes.append(
                GraphNode(
                    x,
                    y,
                    "command (not stored)",
                    _short(node.message_id),
                    f"{node.message_id}: not stored, a command or a message",
                    None,
                    False,
                )
            )
        else:
            where = f"{event.stream}@{event.version} #{event.position}"
            nodes.append(
                GraphNode(
                    x,
                    y,
                    _short(event.type),
                    _short(where),
                    f"{event.type} {where}",
                    event.position,
                    event.position == current,
                )
            )
        return y

    for root in roots:
        place(root, 0)
    width = 2 * _MARGIN + deepest * _COLUMN + NODE_WIDTH
    height = 2 * _MARGIN + max(rows, 1) * _ROW - (_ROW - NODE_HEIGHT)
    return Graph(width, height, nodes, edges)


def _edge(x1: int, top1: int, x2: int, top2: int) -> GraphEdge:
    y1, y2 = top1 + NODE_HEIGHT // 2, top2 + NODE_HEIGHT // 2
    middle = (x1 + x2) // 2
    return GraphEdge(f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2 - 2},{y2}")
