"""The log's pages over HTTP: `$all` with filters and paging, streams, an event and its causes."""

from __future__ import annotations

import html
import re
from collections.abc import Collection
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.console.conftest import Subject
from tests.console.pages import message_of
from tests.console.shop import SCRIPT, seed
from tidings import AsyncMessageBus, MessageBus, Router
from tidings.console import console_app
from tidings.dead_letters import AsyncSQLDeadLetters, SQLDeadLetters
from tidings.errors import StoreUnavailable
from tidings.store import EventStore, MemoryStore, RecordedEvent
from tidings.store.urls import open_async_store, open_store


def test_all_lists_every_event_with_links_to_each(subject: Subject) -> None:
    seeded = subject.seed()
    page = subject.client().get("/")
    assert page.status_code == 200
    for position in (seeded.placed, seeded.paid, seeded.script):
        assert f'href="/events/{position}"' in page.text
    assert "console.PaymentTaken" in page.text
    assert 'href="/streams/Payment-1"' in page.text


def test_all_filters_by_type_and_category(subject: Subject) -> None:
    seeded = subject.seed()
    client = subject.client()
    payments = client.get("/", params={"type": "console.PaymentTaken"})
    assert f'href="/events/{seeded.paid}"' in payments.text
    assert f'href="/events/{seeded.placed}"' not in payments.text
    orders = client.get("/", params={"category": "Order"})
    assert f'href="/events/{seeded.placed}"' in orders.text
    assert f'href="/events/{seeded.script}"' in orders.text
    assert f'href="/events/{seeded.paid}"' not in orders.text
    both = client.get("/", params={"category": "Payment, Order", "type": "console.OrderPlaced"})
    assert f'href="/events/{seeded.placed}"' in both.text
    assert f'href="/events/{seeded.paid}"' not in both.text


def test_all_pages_on_by_position(subject: Subject) -> None:
    seeded = subject.seed()
    client = subject.client(page_size=2)
    first = client.get("/")
    assert f'href="/events/{seeded.script}"' not in first.text
    found = re.search(r'href="(\?[^"]*)" rel="next"', first.text)
    assert found is not None
    second = client.get("/" + html.unescape(found.group(1)))
    assert f'href="/events/{seeded.script}"' in second.text
    assert f'href="/events/{seeded.placed}"' not in second.text
    assert 'rel="next"' not in second.text


def test_streams_and_a_stream(subject: Subject) -> None:
    subject.seed()
    client = subject.client()
    listing = client.get("/streams")
    assert 'href="/streams/Order-1"' in listing.text
    assert 'href="/streams/Payment-1"' in listing.text
    orders = client.get("/streams", params={"category": "Order"})
    assert 'href="/streams/Payment-1"' not in orders.text
    stream = client.get("/streams/Payment-1")
    assert stream.status_code == 200
    assert "console.PaymentTaken" in stream.text
    assert "version 1" in stream.text


def test_an_event_links_to_its_cause_and_what_it_caused(subject: Subject) -> None:
    seeded = subject.seed()
    client = subject.client()
    paid = client.get(f"/events/{seeded.paid}")
    assert paid.status_code == 200
    assert f'class="cause" href="/events/{seeded.placed}"' in paid.text
    placed = client.get(f"/events/{seeded.placed}")
    assert f'class="caused" href="/events/{seeded.paid}"' in placed.text
    # The command that started it is not stored: the tree names it by id, at its root.
    assert f"{seeded.command.message_id} (not stored" in placed.text
    assert '"order_id": "o-1"' in html.unescape(placed.text)


def test_an_event_holding_markup_shows_it_as_text(subject: Subject) -> None:
    seeded = subject.seed()
    client = subject.client()
    for page in (client.get("/"), client.get(f"/events/{seeded.script}")):
        assert SCRIPT not in page.text
        assert "&lt;script&gt;window.pwned = true&lt;/script&gt;" in page.text


def test_links_follow_the_path_the_console_is_mounted_at(sqlite_store: EventStore) -> None:
    seeded = seed(sqlite_store)
    outer = Starlette(routes=[Mount("/ops/console", console_app(sqlite_store))])
    client = TestClient(outer)
    page = client.get("/ops/console/")
    assert page.status_code == 200
    assert f'href="/ops/console/events/{seeded.paid}"' in page.text
    assert 'href="/ops/console/static/console.css"' in page.text
    assert client.get("/ops/console/static/console.js").status_code == 200
    assert client.get(f"/ops/console/events/{seeded.paid}").status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/events/abc", 400, "a position must be a whole number, not &#39;abc&#39;"),
        ("/events/0", 400, "a position must be at least 1, not 0"),
        ("/events/9999", 404, "no event at position 9999"),
        ("/events/99999999999999999999", 400, "a position must be at most 9223372036854775807"),
        ("/?after=99999999999999999999", 400, "after must be at most 9223372036854775807"),
        ("/?after=x", 400, "after must be a whole number, not &#39;x&#39;"),
        ("/?after=-3", 400, "after must be at least 0, not -3"),
        ("/?limit=0", 400, "limit must be at least 1, not 0"),
        ("/?limit=100000", 400, "limit must be at most 500"),
        ("/?category=Order-1", 400, "&#39;Order-1&#39; is not a category"),
        ("/?type=a,,b", 400, "a filter lists names separated by commas, none of them empty"),
        ("/streams/Nope-1", 404, "no stream named &#39;Nope-1&#39;"),
        ("/streams?category=a-b", 400, "&#39;a-b&#39; is not a category"),
        ("/streams/Order-1?from=0", 400, "from (a version) must be at least 1, not 0"),
        ("/tail?category=x-y", 400, "&#39;x-y&#39; is not a category"),
        ("/tail/events?after=z", 400, "after must be a whole number"),
        ("/no/such/page", 404, "no such page"),
    ],
)
def test_bad_input_is_a_4xx_page_with_a_message(
    sqlite_store: EventStore, path: str, status: int, message: str
) -> None:
    seed(sqlite_store)
    page = TestClient(console_app(sqlite_store)).get(path)
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert message in message_of(page)


def test_a_name_holding_a_nul_is_a_400_on_every_store(subject: Subject) -> None:
    # No store holds such a name; PostgreSQL refuses even to compare one.
    subject.seed()
    client = subject.client()
    for path, what in [
        ("/streams/a%00b", "a stream name &#39;a\\x00b&#39;"),
        ("/streams?category=%00", "category"),
        ("/streams?after=a%00", "after (a stream name)"),
        ("/?type=a%00", "a filter&#39;s name"),
        ("/?category=%00", "a filter&#39;s name"),
        ("/tail?type=%00", "a filter&#39;s name"),
        ("/tail/events?category=%00", "a filter&#39;s name"),
        ("/dead-letters?handler=projection:%00", "handler"),
    ]:
        page = client.get(path)
        assert page.status_code == 400, path
        assert message_of(page).startswith(what), (path, message_of(page))
        assert "holds a NUL character, which no name has" in message_of(page)


class _DownStore(MemoryStore):
    """A store whose server has gone away: reads raise `StoreUnavailable`."""

    def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        raise StoreUnavailable("connection refused")


def test_a_store_out_of_reach_is_a_503_page() -> None:
    page = TestClient(console_app(_DownStore())).get("/")
    assert page.status_code == 503
    assert message_of(page) == "the event store cannot be reached now: connection refused"


def test_a_bus_or_letters_of_the_other_kind_than_the_store_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url) as blocking:
        asynchronous = open_async_store(url)
        with pytest.raises(TypeError, match="an async store's console takes an AsyncMessageBus"):
            console_app(asynchronous, bus=MessageBus(Router()))  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="an async store's console takes"):
            console_app(asynchronous, dead_letters=SQLDeadLetters(blocking))  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="a blocking store's console takes a MessageBus"):
            console_app(blocking, bus=AsyncMessageBus(Router()))  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="a blocking store's console takes"):
            letters = AsyncSQLDeadLetters(asynchronous)
            console_app(blocking, dead_letters=letters)  # type: ignore[call-overload]
