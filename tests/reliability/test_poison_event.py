"""Poison events park their projection, dead-letter their handler, and hold up nothing else.

A writer appends deposits with a few poison ones among them. One runner
follows four projections: a ledger that handles every event, one that parks
on the poison (`OnFailure.PARK`), one that dead-letters it and moves on, and
a durable event handler that fails on it. The parked one must stop exactly
at the first poison event while the others reach the head; skipping each
poison event in turn lets it through to the head too. No event is lost or
handled twice by any of them.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.dead_letters import app
from tests.dead_letters.app import Books, ParkingBooks
from tests.projections.ledger import Deposited, Ledger, deposit
from tests.reliability.figures import Figures
from tests.reliability.history import History
from tidings import Router
from tidings.projections import ProjectionRunner, ProjectionState, durable_handlers
from tidings.retry import Retry
from tidings.store.urls import open_store

EVENTS = 600
POISON = 3


def entry_ids(store: Any, ledger: Ledger) -> list[str]:
    with store.transaction() as tx:
        rows = tx.connection.execute(f"SELECT event_id FROM {ledger.entries}").fetchall()
    return [str(event_id) for (event_id,) in rows]


def test_poison_events_park_one_projection_and_the_others_keep_going(
    store_url: str,
    rng: random.Random,
    record_property: Callable[[str, object], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = Figures("poison event isolation", workers=4, events=EVENTS)
    monkeypatch.setitem(app.broken, "books", True)  # the books refuse account "bad"
    store = open_store(store_url)
    schema = getattr(store, "schema", None)
    prefix = "" if schema is None else f"{schema}."
    steady, moving, parking = (
        Ledger(f"{prefix}steady", "steady"),
        Books(f"{prefix}books", "books"),
        ParkingBooks(f"{prefix}parking", "parking"),
    )
    handled: list[str] = []
    router = Router()

    @router.handler(retry=Retry(attempts=2, first_delay=0))
    def audit(event: Deposited) -> None:
        if event.account == "bad":
            raise RuntimeError("cannot audit bad")
        handled.append(event.account)

    history = History()
    poison_at = sorted(rng.sample(range(EVENTS // 10, EVENTS), POISON))
    events = [deposit("bad" if n in poison_at else f"a{rng.randrange(5)}") for n in range(EVENTS)]
    for start in range(0, EVENTS, 50):
        batch = events[start : start + 50]
        for event in batch:
            history.complete(history.invoke(str(event.event_id), "writer"), "ok")
        store.append(f"Account-{start}", batch)
    poison = {str(events[n].event_id) for n in poison_at}
    head = store.watermark().last_position  # all committed, readable yet or not

    runner = ProjectionRunner(
        store,
        [steady, moving, parking, *durable_handlers(router)],
        batch_size=rng.choice([7, 50, 200]),
        poll_interval=0.05,
        retry_waits=False,
    )
    with runner.running():
        for name in ("steady", "books", *[n for n in runner.projections if "audit" in n]):
            runner.wait_for(name, head, timeout=30)
        first_poison = store.read_all()[poison_at[0]].position
        skipped = 0
        while skipped < POISON:
            state = _wait_parked(runner, "parking")
            if skipped == 0:
                assert (state.position, state.failed_position) == (first_poison - 1, first_poison)
                assert history.check(entry_ids(store, parking)).lost  # stopped, not through
            runner.skip("parking")
            skipped += 1
        runner.wait_for("parking", head, timeout=30)
    letters = runner.letters_of()
    store_letters = {(letter.handler, str(letter.envelope.message_id)) for letter in letters}
    everyone = history.check(entry_ids(store, steady))
    past_poison = History()
    for operation in history.operations():
        if operation.key not in poison:
            past_poison.complete(past_poison.invoke(operation.key, "writer"), "ok")
    moved = past_poison.check(entry_ids(store, moving))
    parked = past_poison.check(entry_ids(store, parking))
    statuses = {status.name: status.state for status in runner.status()}
    store.close()
    figures.lost = sum(len(found.lost) for found in (everyone, moved, parked))
    figures.doubled = sum(len(found.doubled) for found in (everyone, moved, parked))
    figures.report(record_property)
    assert not everyone and not moved and not parked, (everyone, moved, parked)
    assert set(statuses.values()) == {ProjectionState.STOPPED}, statuses
    assert sorted(handled) == sorted(e for e in _accounts(events) if e != "bad")
    audit_name = next(n for n in runner.projections if "audit" in n)
    assert {
        key for handler, key in store_letters if handler == f"projection:{audit_name}"
    } == poison
    assert {key for handler, key in store_letters if handler == "projection:books"} == poison
    assert not any(handler == "projection:parking" for handler, _ in store_letters)


def _accounts(events: list[Any]) -> list[str]:
    return [json.loads(event.data)["account"] for event in events]


def _wait_parked(runner: ProjectionRunner, name: str) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (status,) = [s for s in runner.status() if s.name == name]
        if status.state is ProjectionState.PARKED:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{name} did not park")
