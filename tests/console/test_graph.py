"""An event's causation graph: an SVG of its request, each event a link, bounded in size."""

from __future__ import annotations

import re
import uuid

from starlette.testclient import TestClient

from tests.console.conftest import Subject
from tests.console.shop import seed_request
from tidings.console import console_app
from tidings.console.graph import GRAPH_LIMIT
from tidings.messages import utc_now
from tidings.store import EventStore, NewEvent


def _graph(text: str) -> str:
    found = re.search(r'<svg class="causation-graph".*</svg>', text, re.S)  # its boxes nest
    assert found is not None, "the page draws no causation graph"
    return found.group(0)


def test_the_graph_links_each_event_and_marks_the_current_one(subject: Subject) -> None:
    placed, paid, first, second, shipped = seed_request(subject.writer)
    page = subject.client().get(f"/events/{paid}")
    graph = _graph(page.text)
    for position in (placed, paid, first, second, shipped):
        assert f'href="/events/{position}" data-position="{position}"' in graph
    assert re.search(rf'class="node event current" href="/events/{paid}"[^>]*aria-current', graph)
    assert graph.count('aria-current="page"') == 1
    # Two commands, not stored, begin its two trees: the order's, and the shipping's.
    assert graph.count('class="node command"') == 2
    # One arrow per stored event, from its cause.
    assert graph.count('class="edge"') == 5


def _append(store: EventStore, type_name: str, count: int) -> int:
    """`count` events of one request, each caused by the one before; the first's position."""
    correlation, now = uuid.uuid4(), utc_now()
    ids = [uuid.uuid4() for _ in range(count)]
    events = [
        NewEvent(ids[n], type_name, 1, b"{}", correlation, ids[n - 1] if n else None, now)
        for n in range(count)
    ]
    return store.append(f"Chain-{correlation.hex[:8]}", events).positions[0]


def test_markup_in_an_event_type_is_drawn_as_text(sqlite_store: EventStore) -> None:
    first = _append(sqlite_store, "x<script>window.pwned=1</script>", 2)
    page = TestClient(console_app(sqlite_store)).get(f"/events/{first}")
    graph = _graph(page.text)
    assert "<script>" not in page.text
    assert "x&lt;script&gt;window.pwned=1&lt;/script&gt;" in graph


def test_a_request_too_large_to_draw_is_a_note_and_the_tree(sqlite_store: EventStore) -> None:
    client = TestClient(console_app(sqlite_store))
    drawn = _append(sqlite_store, "shop.Step", GRAPH_LIMIT)
    assert 'class="causation-graph"' in client.get(f"/events/{drawn}").text
    first = _append(sqlite_store, "shop.Step", GRAPH_LIMIT + 1)
    page = client.get(f"/events/{first}")
    assert page.status_code == 200
    assert 'class="causation-graph"' not in page.text
    assert f"{GRAPH_LIMIT + 1} messages in this request: more than the {GRAPH_LIMIT}" in page.text
    assert f'href="/events/{first + GRAPH_LIMIT}"' in page.text  # the tree, to its last
