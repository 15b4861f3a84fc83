"""The console in a real browser: causation, its graph, a rebuild, a retry, the tail, a big log.

One SQLite log serves every scenario, through a console over the blocking
store and one over the async store: the log holds 100,000 events besides
the shop's few, so that its first page is read over a log of that size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.console.browser import chromium
from tests.console.conftest import store_url
from tests.console.screenshots import take
from tests.console.serving import bulk_append, serving
from tests.console.shop import OrderCount, OrderPlaced, Picky, Seeded, seed, seed_request
from tidings import Envelope
from tidings.codec import Codec
from tidings.console import console_app
from tidings.projections import ProjectionRunner
from tidings.store import EventStore
from tidings.store.urls import open_async_store, open_store

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BULK = 100_000


class Shop:
    def __init__(self, store: EventStore, seeded: Seeded, request: list[int], url: str) -> None:
        self.store, self.seeded, self.request, self.url = store, seeded, request, url


@pytest.fixture(scope="module", params=["blocking", "async"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """The shop's log on SQLite, written through a blocking store, served over either kind."""
    for url in store_url("sqlite", tmp_path_factory.mktemp("console")):
        with open_store(url) as store:
            seeded = seed(store)
            Picky.broken = True
            ProjectionRunner(store, [Picky()], retry_waits=False).rebuild("picky")
            fanned = seed_request(store)
            bulk_append(store, BULK)
            projections = [OrderCount(), Picky()]
            if request.param == "async":
                shown = open_async_store(url)
                app = console_app(shown, projections)
                close: Callable[[], Awaitable[None]] | None = shown.aclose
            else:
                app, close = console_app(store, projections), None
            with serving(app, close) as base:
                yield Shop(store, seeded, fanned, base)
        Picky.broken = True


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    opened = context.new_page()
    yield opened
    context.close()


def test_follows_a_causation_link(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}/events/{shop.seeded.paid}")
    assert page.inner_text("h1").startswith("console.PaymentTaken")
    page.click("a.cause")
    page.wait_for_url(f"{shop.url}/events/{shop.seeded.placed}")
    assert page.inner_text("h1").startswith("console.OrderPlaced")
    assert page.locator("a.caused").inner_text() == f"console.PaymentTaken #{shop.seeded.paid}"


def test_a_node_of_the_causation_graph_opens_its_event(shop: Shop, page: Page) -> None:
    paid, second = shop.request[1], shop.request[3]
    page.goto(f"{shop.url}/events/{paid}")
    graph = page.locator("svg.causation-graph")
    assert graph.is_visible()
    assert graph.locator("a.node").count() == 5
    assert graph.locator("a.node.current").get_attribute("data-position") == str(paid)
    graph.locator(f'a.node[data-position="{second}"]').click()
    page.wait_for_url(f"{shop.url}/events/{second}")
    assert page.inner_text("h1").startswith("console.StockReserved")
    current = page.locator("svg.causation-graph a.node.current")
    assert current.get_attribute("data-position") == str(second)


def test_markup_in_an_event_is_not_run(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}/events/{shop.seeded.script}")
    assert "<script>window.pwned = true</script>" in page.inner_text("#data")
    assert page.evaluate("window.pwned === undefined")


def test_rebuild_progress_reaches_100(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}/projections")
    page.locator('tr[data-projection="order_count"] button', has_text="Rebuild").click()
    page.wait_for_selector(".notice")
    page.wait_for_function(
        "document.querySelector('tr.rebuild .percent')?.textContent === '100%'", timeout=20_000
    )
    assert page.inner_text("tr.rebuild .rebuild-state") == "done"


def test_retried_dead_letter_is_gone(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}/dead-letters")
    page.click("tr[data-letter] a")
    assert "RuntimeError: payment o-1 refused" in page.inner_text(".traceback")
    Picky.broken = False
    page.click("button:has-text('Retry')")
    page.wait_for_selector(".notice")
    assert "delivered, dropped from the dead letters" in page.inner_text(".notice")
    assert page.locator("tr[data-letter]").count() == 0


def test_live_tail_shows_an_appended_event_within_a_second(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}/tail")
    page.wait_for_function("document.getElementById('tail-status').textContent === 'live'")
    event = Codec().new_event(Envelope.new(OrderPlaced("o-live", "just now")))
    [position] = shop.store.append("Order-live", [event]).positions
    page.wait_for_selector(f'#tail tr[data-position="{position}"]', timeout=1_000)
    assert "Order-live" in page.inner_text(f'#tail tr[data-position="{position}"]')


def test_first_page_over_100000_events_loads_in_under_a_second(shop: Shop, page: Page) -> None:
    assert shop.store.head_position() > BULK
    started = time.perf_counter()
    page.goto(f"{shop.url}/?type=console.Tick")
    elapsed = time.perf_counter() - started
    assert page.locator("table.events tbody tr").count() == 50
    assert elapsed < 1.0, f"the first page took {elapsed:.2f} s"
    started = time.perf_counter()
    page.click("a[rel=next]")
    page.wait_for_url("**after=*")
    assert time.perf_counter() - started < 1.0


def test_the_screenshot_helper_writes_each_page(browser: Browser, tmp_path: Path) -> None:
    written = take(browser, tmp_path)
    assert [path.name for path in written] == [
        "console-all.png",
        "console-event.png",
        "console-projections.png",
        "console-dead-letter.png",
        "console-graph.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
