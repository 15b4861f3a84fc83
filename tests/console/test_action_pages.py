"""Projections and dead letters over HTTP: their pages, the actions, CSRF, read-only, tokens."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
from starlette.testclient import TestClient

from tests.console.conftest import Subject
from tests.console.pages import csrf_of, message_of, notice_of
from tests.console.shop import OrderCount, OrderPlaced, Picky, Stubborn, seed
from tidings import Envelope
from tidings.console import console_app
from tidings.dead_letters import DeadLetter, SQLDeadLetters
from tidings.projections import Projection, ProjectionRunner, ProjectionState, ProjectionStopped
from tidings.store import EventStore


@pytest.fixture
def broken() -> Iterator[None]:
    Picky.broken = True
    yield
    Picky.broken = True


def _state(store: EventStore, projection: Projection, name: str) -> ProjectionState:
    [found] = [s for s in ProjectionRunner(store, [projection]).status() if s.name == name]
    return found.state


def _status(store: EventStore, name: str) -> ProjectionState:
    return _state(store, OrderCount() if name == "order_count" else Picky(), name)


def _letter(store: EventStore) -> str:
    """Run the picky projection once: its failure on the payment is a dead letter."""
    ProjectionRunner(store, [Picky()], retry_waits=False).rebuild("picky")
    [letter] = SQLDeadLetters(store).list()
    return str(letter.id)


def test_projections_page_shows_each_with_position_lag_and_state(subject: Subject) -> None:
    subject.seed()
    page = subject.client([OrderCount(), Picky()]).get("/projections")
    assert page.status_code == 200
    assert 'data-projection="order_count"' in page.text
    assert 'data-projection="picky"' in page.text
    assert "state-stopped" in page.text  # no runner holds them
    assert "Rebuild" in page.text


def test_pause_and_resume_change_the_stored_state(sqlite_store: EventStore) -> None:
    seed(sqlite_store)
    client = TestClient(console_app(sqlite_store, [OrderCount(), Picky()]))
    token = csrf_of(client.get("/projections"))
    paused = client.post("/projections/order_count/pause", data={"csrf": token})
    assert paused.status_code == 200  # after the redirect back to the page
    assert notice_of(paused) == "order_count: paused"
    assert _status(sqlite_store, "order_count") is ProjectionState.PAUSED
    assert "Resume" in paused.text
    client.post("/projections/order_count/resume", data={"csrf": token})
    assert _status(sqlite_store, "order_count") is not ProjectionState.PAUSED


def test_pause_and_resume_show_on_the_page_on_every_store(subject: Subject) -> None:
    subject.seed()
    client = subject.client([OrderCount(), Picky()])
    token = csrf_of(client.get("/projections"))
    paused = client.post("/projections/order_count/pause", data={"csrf": token})
    assert notice_of(paused) == "order_count: paused"
    row = re.search(r'<tr data-projection="order_count">.*?</tr>', paused.text, re.S)
    assert row is not None and 'class="state state-paused"' in row.group(0)
    resumed = client.post("/projections/order_count/resume", data={"csrf": token})
    assert notice_of(resumed) == "order_count: running"
    row = re.search(r'<tr data-projection="order_count">.*?</tr>', resumed.text, re.S)
    assert row is not None and "state-paused" not in row.group(0)


def test_rebuild_reports_its_progress_until_done(subject: Subject) -> None:
    subject.seed()
    counted = OrderCount()
    client = subject.client([counted])
    token = csrf_of(client.get("/projections"))
    started = client.post("/projections/order_count/rebuild", data={"csrf": token})
    assert notice_of(started) == "order_count: rebuilding"
    deadline = time.monotonic() + 10
    while not (progress := client.get("/projections/order_count/rebuild").json())["done"]:
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert progress["percent"] == 100
    assert progress["error"] is None
    assert counted.orders == {"o-1", "o-2"}


def test_an_action_without_the_csrf_token_is_refused(sqlite_store: EventStore) -> None:
    client = TestClient(console_app(sqlite_store, [OrderCount()]))
    for form in ({}, {"csrf": "forged"}):
        refused = client.post("/projections/order_count/pause", data=form)
        assert refused.status_code == 403
        assert "CSRF token" in message_of(refused)
    assert _status(sqlite_store, "order_count") is not ProjectionState.PAUSED


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/projections/nope/pause", 404, "no projection named &#39;nope&#39; (known: order_count)"),
        ("/projections/order_count/explode", 404, "no projection action &#39;explode&#39;"),
        ("/dead-letters/abc/retry", 400, "&#39;abc&#39; is not a dead letter id"),
        (f"/dead-letters/{uuid4()}/shred", 404, "no dead letter action &#39;shred&#39;"),
    ],
)
def test_a_bad_action_is_a_4xx_page(
    sqlite_store: EventStore, path: str, status: int, message: str
) -> None:
    client = TestClient(console_app(sqlite_store, [OrderCount()]))
    refused = client.post(path, data={"csrf": csrf_of(client.get("/projections"))})
    assert refused.status_code == status
    assert message in message_of(refused)


def test_progress_of_a_rebuild_never_started_is_404(sqlite_store: EventStore) -> None:
    page = TestClient(console_app(sqlite_store, [OrderCount()])).get(
        "/projections/order_count/rebuild"
    )
    assert page.status_code == 404
    assert "no rebuild of &#39;order_count&#39; was started here" in message_of(page)


def test_dead_letters_show_error_and_traceback(subject: Subject, broken: None) -> None:
    subject.seed()
    subject.rebuild(Picky())
    client = subject.client([Picky()])
    listing = client.get("/dead-letters")
    assert "payment o-1 refused" in listing.text
    assert "projection:picky" in listing.text
    [letter_id] = {part.split('"')[0] for part in listing.text.split('data-letter="')[1:]}
    detail = client.get(f"/dead-letters/{letter_id}")
    assert "Traceback" in detail.text
    assert "RuntimeError: payment o-1 refused" in detail.text


def _letters_listed(client: TestClient) -> list[str]:
    """The ids of the letters the dead letters page lists."""
    return re.findall(r'data-letter="([^"]+)"', client.get("/dead-letters").text)


def test_retry_keeps_a_letter_that_fails_again_and_drops_one_delivered(
    subject: Subject, broken: None
) -> None:
    subject.seed()
    subject.rebuild(Picky())
    client = subject.client([Picky()])
    [letter_id] = _letters_listed(client)
    token = csrf_of(client.get(f"/dead-letters/{letter_id}"))
    again = client.post(f"/dead-letters/{letter_id}/retry", data={"csrf": token})
    assert notice_of(again) == f"{letter_id}: failed again, kept as a new dead letter"
    [renewed] = _letters_listed(client)
    assert renewed != letter_id
    Picky.broken = False
    delivered = client.post(f"/dead-letters/{renewed}/retry", data={"csrf": token})
    assert notice_of(delivered) == f"{renewed}: delivered, dropped from the dead letters"
    assert _letters_listed(client) == []
    assert "no dead letters" in delivered.text


def test_an_action_on_a_letter_that_is_gone_says_so(subject: Subject, broken: None) -> None:
    subject.seed()
    subject.rebuild(Picky())
    client = subject.client([Picky()])
    [letter_id] = _letters_listed(client)
    token = csrf_of(client.get(f"/dead-letters/{letter_id}"))
    dropped = client.post(f"/dead-letters/{letter_id}/drop", data={"csrf": token})
    assert notice_of(dropped) == f"{letter_id}: dropped"
    for action in ("retry", "drop"):
        gone = client.post(f"/dead-letters/{letter_id}/{action}", data={"csrf": token})
        assert gone.status_code == 404
        assert message_of(gone) == (
            f"dead letter {letter_id} is gone: it was retried or dropped since"
        )
    assert client.get(f"/dead-letters/{letter_id}").status_code == 404
    paged = client.get("/dead-letters", params={"after": letter_id})
    assert paged.status_code == 404
    assert "to page after" in message_of(paged)


def test_a_bus_letter_needs_the_bus_to_retry_and_drops_without(sqlite_store: EventStore) -> None:
    letters = SQLDeadLetters(sqlite_store)
    envelope = Envelope.new(OrderPlaced("o-9", "lost"))
    letter = DeadLetter.of(envelope, "shop.send_mail", RuntimeError("smtp down"), 3)
    letters.add(letter)
    client = TestClient(console_app(sqlite_store))
    token = csrf_of(client.get(f"/dead-letters/{letter.id}"))
    refused = client.post(f"/dead-letters/{letter.id}/retry", data={"csrf": token})
    assert refused.status_code == 409
    assert "needs the application&#39;s bus" in message_of(refused)
    dropped = client.post(f"/dead-letters/{letter.id}/drop", data={"csrf": token})
    assert notice_of(dropped) == f"{letter.id}: dropped"
    assert letters.count() == 0


def test_read_only_hides_actions_and_refuses_them(sqlite_store: EventStore) -> None:
    seed(sqlite_store)
    letter_id = _letter(sqlite_store)
    client = TestClient(console_app(sqlite_store, [OrderCount(), Picky()], read_only=True))
    projections = client.get("/projections")
    letter = client.get(f"/dead-letters/{letter_id}")
    for page in (projections, letter):
        assert page.status_code == 200
        assert 'method="post"' not in page.text
        assert "read-only" in page.text
    for path in (
        "/projections/order_count/pause",
        "/projections/order_count/rebuild",
        f"/dead-letters/{letter_id}/drop",
    ):
        refused = client.post(path, data={"csrf": "anything"})
        assert refused.status_code == 403
        assert "read-only" in message_of(refused)
    assert SQLDeadLetters(sqlite_store).count() == 1


def test_a_token_is_shown_once_then_carried_by_a_cookie(sqlite_store: EventStore) -> None:
    app = console_app(sqlite_store, token="s3cret")
    client = TestClient(app)
    refused = client.get("/")
    assert refused.status_code == 401
    assert "access token" in message_of(refused)
    assert client.get("/?token=wrong").status_code == 401
    shown = client.get("/streams?token=s3cret", follow_redirects=False)
    assert shown.status_code == 303
    assert shown.headers["location"].endswith("/streams")
    assert client.get("/streams").status_code == 200  # the cookie carries it now
    bearer = TestClient(app).get("/", headers={"Authorization": "Bearer s3cret"})
    assert bearer.status_code == 200


def test_the_live_tail_streams_events_after_a_position(subject: Subject) -> None:
    seeded = subject.seed()
    client = subject.client(tail_seconds=0.3, tail_interval=0.05)
    assert client.get("/tail").status_code == 200
    sent = client.get("/tail/events", params={"after": seeded.placed}).text
    assert f"id: {seeded.paid}\nevent: tidings\n" in sent
    assert f"id: {seeded.placed}\n" not in sent
    assert '"type": "console.PaymentTaken"' in sent
    resumed = client.get("/tail/events", headers={"Last-Event-ID": str(seeded.paid)}).text
    assert f"id: {seeded.script}\n" in resumed
    assert f"id: {seeded.paid}\n" not in resumed
    filtered = client.get("/tail/events", params={"after": 0, "category": "Payment"}).text
    assert f"id: {seeded.paid}\n" in filtered
    assert f"id: {seeded.script}\n" not in filtered


def _parked(store: EventStore) -> str:
    with pytest.raises(ProjectionStopped):
        ProjectionRunner(store, [Stubborn()], retry_waits=False).rebuild("stubborn")
    [letter] = SQLDeadLetters(store).list()
    assert letter.parked
    return str(letter.id)


def test_a_parked_projection_shows_its_error_and_resumes(sqlite_store: EventStore) -> None:
    seeded = seed(sqlite_store)
    letter_id = _parked(sqlite_store)
    client = TestClient(console_app(sqlite_store, [Stubborn()]))
    page = client.get("/projections")
    assert "state-parked" in page.text
    assert f"at #{seeded.paid}: RuntimeError: payment o-1 not understood" in page.text
    assert "Resume" in page.text
    assert "parked" in client.get(f"/dead-letters/{letter_id}").text
    retried = client.post(f"/dead-letters/{letter_id}/retry", data={"csrf": csrf_of(page)})
    assert notice_of(retried) == (
        f"{letter_id}: projection stubborn resumed; its runner tries the event again"
    )
    assert _state(sqlite_store, Stubborn(), "stubborn") is ProjectionState.STOPPED


def test_dropping_a_parked_letter_skips_its_event(sqlite_store: EventStore) -> None:
    seeded = seed(sqlite_store)
    letter_id = _parked(sqlite_store)
    client = TestClient(console_app(sqlite_store, [Stubborn()]))
    token = csrf_of(client.get("/projections"))
    dropped = client.post(f"/dead-letters/{letter_id}/drop", data={"csrf": token})
    assert notice_of(dropped) == (
        f"{letter_id}: dropped; projection stubborn runs on from the next event"
    )
    assert SQLDeadLetters(sqlite_store).count() == 0
    [status] = ProjectionRunner(sqlite_store, [Stubborn()]).status()
    assert status.position == seeded.paid


def test_letters_and_streams_page_on(sqlite_store: EventStore) -> None:
    letters = SQLDeadLetters(sqlite_store)
    made = []
    for n in range(3):
        envelope = Envelope.new(OrderPlaced(f"o-{n}", "lost"))
        made.append(DeadLetter.of(envelope, "shop.mail", RuntimeError(f"down {n}"), 1))
        letters.add(made[-1])
    seed(sqlite_store)
    client = TestClient(console_app(sqlite_store, page_size=2))
    first = client.get("/dead-letters")
    assert first.text.count("data-letter=") == 2
    found = re.search(r'href="(\?[^"]*)" rel="next"', first.text)
    assert found is not None
    second = client.get("/dead-letters" + html.unescape(found.group(1)))
    assert second.text.count("data-letter=") == 1
    assert "&gt;3&lt;" not in second.text
    streams = client.get("/streams")
    assert 'href="/streams/Order-1"' in streams.text
    assert 'href="/streams/Payment-1"' not in streams.text
    found = re.search(r'href="(\?[^"]*)" rel="next"', streams.text)
    assert found is not None
    rest = client.get("/streams" + html.unescape(found.group(1)))
    assert 'href="/streams/Payment-1"' in rest.text
    assert 'href="/streams/Order-1"' not in rest.text


def test_allowed_hosts_refuse_another_host_name(sqlite_store: EventStore) -> None:
    app = console_app(sqlite_store, allowed_hosts=["127.0.0.1", "localhost"])
    refused = TestClient(app, base_url="http://attacker.example").get("/")
    assert refused.status_code == 400
    assert "host" in refused.text.lower()
    assert TestClient(app, base_url="http://localhost:8700").get("/").status_code == 200
