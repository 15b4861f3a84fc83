"""`tidings dlq`: list, show, retry and drop the bus's and projections' dead letters."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.dead_letters import app
from tests.projections.ledger import deposit
from tests.services import postgres_dsn
from tidings.cli.dlq import dlq_app
from tidings.dead_letters import SQLDeadLetters
from tidings.projections import ProjectionRunner, ProjectionState
from tidings.sagas import SagaRunner, SagaStatus
from tidings.store.urls import open_store

runner = CliRunner()
APP = "tests.dead_letters.app:bus"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    import psycopg
    from psycopg import sql

    dsn = postgres_dsn()
    schema = f"dlq_cli_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def fail_welcome(url: str, *users: str) -> list[str]:
    """Dead-letter a welcome mail per user; their letter ids, oldest first."""
    app.broken["mail"] = True
    store = open_store(url)
    try:
        bus = app.bus(store)
        for user in users:
            bus.handle(app.Welcomed(user))
        return [str(letter.id) for letter in SQLDeadLetters(store).list()]
    finally:
        store.close()


def test_list_and_show_describe_the_letters(url: str) -> None:
    first, second = fail_welcome(url, "u1", "u2")
    listed = runner.invoke(dlq_app, ["list", "--store", url])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines] == [first, second]
    assert "send_welcome_mail" in lines[0] and "test.dlq.Welcomed" in lines[0]
    assert "x3" in lines[0] and "ConnectionError: mail server down" in lines[0]

    as_json = runner.invoke(dlq_app, ["list", "--store", url, "--json", "--limit", "1"])
    (only,) = [json.loads(line) for line in as_json.output.splitlines()]
    assert only["id"] == first and only["event"] == {"user_id": "u1"}

    shown = runner.invoke(dlq_app, ["show", second, "--store", url])
    assert shown.exit_code == 0, shown.output
    assert 'event: {"user_id": "u2"}' in shown.output
    assert "raise ConnectionError" in shown.output


def test_list_pages_with_the_cursor_it_prints(url: str) -> None:
    first, second, third = fail_welcome(url, "p1", "p2", "p3")
    page = runner.invoke(dlq_app, ["list", "--store", url, "--limit", "2"])
    assert page.exit_code == 0, page.output
    *lines, more = page.output.splitlines()
    assert [line.split()[0] for line in lines] == [first, second]
    assert more == f"more: --after {second}"

    rest = runner.invoke(dlq_app, ["list", "--store", url, "--limit", "2", "--after", second])
    assert rest.exit_code == 0, rest.output
    assert [line.split()[0] for line in rest.output.splitlines()] == [third]

    exact = runner.invoke(dlq_app, ["list", "--store", url, "--limit", "3"])
    assert "more:" not in exact.output
    as_json = runner.invoke(dlq_app, ["list", "--store", url, "--json", "--after", first])
    assert [json.loads(line)["id"] for line in as_json.output.splitlines()] == [second, third]


def test_a_cursor_that_is_gone_or_not_an_id_exits_2(url: str) -> None:
    (letter,) = fail_welcome(url, "p4")
    assert runner.invoke(dlq_app, ["drop", letter, "--store", url]).exit_code == 0
    gone = runner.invoke(dlq_app, ["list", "--store", url, "--after", letter])
    assert gone.exit_code == 2
    (line,) = gone.output.splitlines()
    assert line.endswith(
        f"dlq list: error: Invalid value for --after: no dead letter {letter} "
        "(retried or dropped since?)"
    )
    bad = runner.invoke(dlq_app, ["list", "--store", url, "--after", "12"])
    assert bad.exit_code == 2
    assert "'12' is not a UUID" in bad.output


def test_count_counts_all_letters_one_handler_or_each(url: str) -> None:
    fail_welcome(url, "c1", "c2")
    with failing_projections(url):
        pass
    handler = letters_by_handler(url).keys() - {"projection:books", "projection:parking"}
    (mail,) = handler
    total = runner.invoke(dlq_app, ["count", "--store", url])
    assert (total.exit_code, total.output) == (0, "4\n")
    one = runner.invoke(dlq_app, ["count", "--store", url, "--handler", mail])
    assert (one.exit_code, one.output) == (0, "2\n")
    none = runner.invoke(dlq_app, ["count", "--store", url, "--handler", "no.such.handler"])
    assert (none.exit_code, none.output) == (0, "0\n")
    each = runner.invoke(dlq_app, ["count", "--store", url, "--per-handler"])
    assert each.exit_code == 0, each.output
    assert each.output.splitlines() == [  # by handler name
        "1  projection:books",
        "1  projection:parking",
        f"2  {mail}",
    ]
    both = runner.invoke(dlq_app, ["count", "--store", url, "--per-handler", "--handler", mail])
    assert both.exit_code == 2

    as_json = runner.invoke(dlq_app, ["count", "--store", url, "--json", "--per-handler"])
    assert [json.loads(line) for line in as_json.output.splitlines()] == [
        {"handler": "projection:books", "count": 1},
        {"handler": "projection:parking", "count": 1},
        {"handler": mail, "count": 2},
    ]
    one_json = runner.invoke(dlq_app, ["count", "--store", url, "--json", "--handler", mail])
    assert json.loads(one_json.output) == {"handler": mail, "count": 2}
    all_json = runner.invoke(dlq_app, ["count", "--store", url, "--json"])
    assert json.loads(all_json.output) == {"handler": None, "count": 4}


def test_retry_runs_the_handler_through_the_application_bus(url: str) -> None:
    (letter,) = fail_welcome(url, "u3")
    again = runner.invoke(dlq_app, ["retry", letter, "--store", url, "--app", APP])
    assert again.exit_code == 1
    assert "failed again" in again.output
    (kept,) = [
        json.loads(x)["id"]
        for x in runner.invoke(dlq_app, ["list", "--store", url, "--json"]).output.splitlines()
    ]
    app.broken["mail"], app.delivered[:] = False, []
    done = runner.invoke(dlq_app, ["retry", kept, "--store", url, "--app", APP])
    assert done.exit_code == 0, done.output
    assert app.delivered == ["u3"]
    assert runner.invoke(dlq_app, ["list", "--store", url]).output.strip() == "no dead letters"


def test_drop_forgets_a_letter(url: str) -> None:
    first, second = fail_welcome(url, "u4", "u5")
    dropped = runner.invoke(dlq_app, ["drop", first, "--store", url])
    assert dropped.exit_code == 0 and "dropped" in dropped.output
    listed = runner.invoke(dlq_app, ["list", "--store", url, "--json"])
    assert [json.loads(line)["id"] for line in listed.output.splitlines()] == [second]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["show", "not-a-uuid"], "is not a UUID"),
        (["drop", str(uuid.UUID(int=7))], "no dead letter"),
        (["retry", str(uuid.UUID(int=7)), "--app", APP], "no dead letter"),
        (["retry", "{letter}", "--app", "nocolon"], "is not MODULE:FACTORY"),
        (["retry", "{letter}", "--app", "no_such_module_x:bus"], "cannot import"),
        (["retry", "{letter}", "--app", "tests.dead_letters.app:nothing"], "has no function"),
        (["retry", "{letter}", "--app", "tests.dead_letters.app:memory_bus"], "in memory"),
    ],
)
def test_bad_arguments_exit_2_with_a_one_line_reason(
    tmp_path: Path, arguments: list[str], reason: str
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    (letter,) = fail_welcome(url, "u6")
    filled = [argument.replace("{letter}", letter) for argument in arguments]
    result = runner.invoke(dlq_app, [*filled, "--store", url])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert reason in line


def test_the_memory_store_is_refused() -> None:
    result = runner.invoke(dlq_app, ["list", "--store", "memory:"])
    assert result.exit_code == 2
    assert "memory store" in result.output


PROJECTIONS = "tests.dead_letters.app:projections"


def letters_by_handler(url: str) -> dict[str, dict[str, Any]]:
    listed = runner.invoke(dlq_app, ["list", "--store", url, "--json"])
    assert listed.exit_code == 0, listed.output
    found = [json.loads(line) for line in listed.output.splitlines()]
    return {letter["handler"]: letter for letter in found}


def wait_parked(projections: ProjectionRunner, name: str) -> None:
    for _ in range(500):
        if {s.name: s.state for s in projections.status()}[name] is ProjectionState.PARKED:
            return
        time.sleep(0.01)
    raise TimeoutError(f"{name} did not park")


@contextmanager
def failing_projections(url: str) -> Iterator[tuple[ProjectionRunner, int]]:
    """Both test projections running, stopped on a bad deposit; the runner and the last position."""
    app.broken["books"] = True
    store = open_store(url)
    try:
        projections = ProjectionRunner(
            store, app.projections(store), poll_interval=0.05, retry_waits=False
        )
        with projections.running():
            store.append("Account-2", [deposit("bad", 5)])
            last = store.append("Account-1", [deposit("good", 2)]).positions[-1]
            projections.wait_for("books", last)
            wait_parked(projections, "parking")
            yield projections, last
    finally:
        app.broken["books"] = False
        store.close()


def test_projection_letters_are_listed_retried_and_a_parked_one_dropped(url: str) -> None:
    with failing_projections(url) as (projections, last):
        letters = letters_by_handler(url)
        moved, parked = letters["projection:books"], letters["projection:parking"]
        assert (moved["parked"], parked["parked"]) == (False, True)
        assert moved["event"] == parked["event"] == {"account": "bad", "amount": 5}
        assert parked["error"] == "RuntimeError: cannot book to bad"
        text = runner.invoke(dlq_app, ["list", "--store", url]).output
        assert f"{parked['id']}  " in text and "projection:parking  parked" in text

        again = runner.invoke(dlq_app, ["retry", moved["id"], "--store", url, "-p", PROJECTIONS])
        assert again.exit_code == 1 and "failed again" in again.output
        app.broken["books"] = False
        retried = letters_by_handler(url)["projection:books"]["id"]
        done = runner.invoke(dlq_app, ["retry", retried, "--store", url, "-p", PROJECTIONS])
        assert done.exit_code == 0, done.output

        dropped = runner.invoke(dlq_app, ["drop", parked["id"], "--store", url])
        assert dropped.exit_code == 0, dropped.output
        assert "projection parking runs on from the next event" in dropped.output
        projections.wait_for("parking", last)
        assert letters_by_handler(url) == {}
        states = {s.name: (s.state, s.lag) for s in projections.status()}
        assert states["parking"] == (ProjectionState.RUNNING, 0)


def test_retrying_a_parked_letter_resumes_its_projection(url: str) -> None:
    with failing_projections(url) as (projections, last):
        parked = letters_by_handler(url)["projection:parking"]
        app.broken["books"] = False
        resumed = runner.invoke(dlq_app, ["retry", parked["id"], "--store", url, "-p", PROJECTIONS])
        assert resumed.exit_code == 0, resumed.output
        assert "projection parking resumed" in resumed.output
        projections.wait_for("parking", last)
        assert "projection:parking" not in letters_by_handler(url)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["retry", "{letter}"], "needs the application's projections"),
        (["retry", "{letter}", "--app", APP], "needs the application's projections"),
        (["retry", "{letter}", "-p", "tests.projections.ledger:LEDGERS"], "no projection named"),
        (["retry", "{letter}", "-p", "tests.dead_letters.app:nothing"], "has no attribute"),
    ],
)
def test_a_projection_letter_needs_its_projections(
    tmp_path: Path, arguments: list[str], reason: str
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with failing_projections(url):
        letter = letters_by_handler(url)["projection:books"]["id"]
        filled = [argument.replace("{letter}", letter) for argument in arguments]
        result = runner.invoke(dlq_app, [*filled, "--store", url])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert reason in line


SAGAS = "tests.dead_letters.app:sagas"


def test_a_parked_saga_is_listed_and_resumed_from_the_command_line(url: str) -> None:
    app.broken["refunds"] = True
    store = open_store(url)
    try:
        parked = SagaRunner(store, app.sagas, retry_wait=0).start("Checkout", "c1", {})
        assert parked.status is SagaStatus.PARKED
    finally:
        store.close()
    letter = letters_by_handler(url)["saga:Checkout"]
    assert letter["parked"] and letter["stream"] == "Checkout-c1"
    assert letter["error"] == "ConnectionError: payments down"
    listed = runner.invoke(dlq_app, ["list", "--store", url]).output
    assert "saga:Checkout  parked  tidings.saga.Parked" in listed

    dropped = runner.invoke(dlq_app, ["drop", letter["id"], "--store", url])
    assert dropped.exit_code == 2 and "waits to be resumed" in dropped.output
    without = runner.invoke(dlq_app, ["retry", letter["id"], "--store", url])
    assert without.exit_code == 2 and "--sagas" in without.output

    still = runner.invoke(dlq_app, ["retry", letter["id"], "--store", url, "--sagas", SAGAS])
    assert still.exit_code == 1, still.output
    assert "now parked" in still.output
    again = letters_by_handler(url)["saga:Checkout"]
    app.broken["refunds"] = False
    done = runner.invoke(dlq_app, ["retry", again["id"], "--store", url, "--sagas", SAGAS])
    assert done.exit_code == 0, done.output
    assert "saga Checkout-c1 resumed, now compensated" in done.output
    assert "saga:Checkout" not in letters_by_handler(url)
