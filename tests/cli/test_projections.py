"""`tidings projections`: status, rebuild, pause and resume, agreeing with runners elsewhere."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.projections.ledger import LEDGERS, deposit
from tidings.cli.projections import projections_app
from tidings.dead_letters import SQLDeadLetters
from tidings.projections import ProjectionRunner, ProjectionState, ProjectionStopped
from tidings.store import SQLiteStore

SPEC = "tests.projections.ledger:LEDGERS"


@pytest.fixture
def url(tmp_path: Path) -> str:
    store = SQLiteStore(tmp_path / "events.db")
    for i in range(30):
        store.append(f"Account-{i % 3}", [deposit(f"a{i % 3}", 1)])
    store.close()
    return f"sqlite:///{tmp_path / 'events.db'}"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(projections_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_status_shows_state_position_and_lag(url: str) -> None:
    code, out, _ = invoke("status", "--store", url, "--projections", SPEC, "--json")
    assert code == 0
    [line] = [json.loads(line) for line in out.splitlines()]
    assert (line["name"], line["state"], line["position"], line["lag"]) == (
        "ledger",
        "stopped",
        0,
        30,
    )
    assert (line["owner"], line["heartbeat_age"]) == (None, None)


def test_rebuild_replays_the_log_into_the_read_model(url: str, tmp_path: Path) -> None:
    code, out, _ = invoke("rebuild", "ledger", "--store", url, "--projections", SPEC)
    assert code == 0, out
    assert "ledger: rebuilt, at position 30" in out
    with sqlite3.connect(tmp_path / "events.db") as connection:
        rows = connection.execute("SELECT account, balance FROM ledger_balances ORDER BY 1")
        assert rows.fetchall() == [("a0", 10), ("a1", 10), ("a2", 10)]
    code, out, _ = invoke("status", "--store", url, "-p", SPEC)
    # Rebuilt here, by a runner gone since: stopped, last heard of a moment ago.
    words = out.split()
    assert words[:6] == ["ledger", "stopped", "position", "30", "lag", "0"]
    assert words[6] == "heartbeat" and float(words[7]) < 60 and words[8:] == ["s", "ago"]


def test_pause_and_resume_act_on_a_runner_in_another_process(url: str, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    runner = ProjectionRunner(store, LEDGERS, poll_interval=0.05)
    with runner.running():
        runner.wait_for("ledger", 30)
        assert invoke("pause", "ledger", "--store", url, "-p", SPEC)[:2] == (0, "ledger: paused\n")
        [status] = runner.status()
        assert status.state is ProjectionState.PAUSED
        store.append("Account-1", [deposit("a1", 1)])
        assert invoke("resume", "ledger", "--store", url, "-p", SPEC)[:2] == (
            0,
            "ledger: running\n",
        )
        runner.wait_for("ledger", 31, timeout=10)
    store.close()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["pause", "nope", "-p", SPEC], "no projection named 'nope' (known: ledger)"),
        (["status", "-p", "tests.projections.ledger"], "is not MODULE:ATTRIBUTE"),
        (["status", "-p", "tests.nowhere:X"], "cannot import 'tests.nowhere'"),
        (
            ["status", "-p", "tests.projections.ledger:Deposited"],
            "is not a sequence of projections",
        ),
        (["status", "-p", "tests.projections.ledger:nothing"], "has no attribute 'nothing'"),
    ],
)
def test_bad_arguments_exit_2_with_a_one_line_reason(
    url: str, args: list[str], reason: str
) -> None:
    code, _, err = invoke(*args, "--store", url)
    assert code == 2
    assert reason in err
    assert len(err.strip().splitlines()) == 1


def test_rebuild_is_carried_out_by_the_runner_that_holds_the_projection(
    url: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    runner = ProjectionRunner(store, LEDGERS, poll_interval=0.05)
    with runner.running():
        runner.wait_for("ledger", 30)
        code, out, err = invoke("rebuild", "ledger", "--store", url, "-p", SPEC)
        assert code == 0, err
        assert "ledger: rebuilt, at position 30" in out
        store.append("Account-1", [deposit("a1", 1)])
        runner.wait_for("ledger", 31, timeout=10)
    with sqlite3.connect(tmp_path / "events.db") as connection:
        rows = connection.execute("SELECT account, balance FROM ledger_balances ORDER BY 1")
        assert rows.fetchall() == [("a0", 10), ("a1", 11), ("a2", 10)]
    store.close()


def test_a_parked_projection_shows_its_error_and_its_event_is_a_parked_letter(
    tmp_path: Path,
) -> None:
    from tests.dead_letters import app

    path = tmp_path / "parked.db"
    url, spec = f"sqlite:///{path}", "tests.dead_letters.app:projections"
    store = SQLiteStore(path)
    app.broken["books"] = True
    try:
        bad = store.append("Account-2", [deposit("bad", 5)]).positions[0]
        runner = ProjectionRunner(store, app.projections(store), retry_waits=False)
        runner.rebuild("books")
        with pytest.raises(ProjectionStopped):
            runner.rebuild("parking")
        code, out, _ = invoke("status", "--store", url, "-p", spec)
        assert code == 0
        line = next(line for line in out.splitlines() if line.startswith("parking"))
        assert f"parked  position 0  lag 1  failed at {bad}: RuntimeError: cannot book" in line
        [letter] = SQLDeadLetters(store).list(handler="projection:parking")
        assert letter.parked and letter.envelope.position == bad
        app.broken["books"] = False
        assert invoke("resume", "parking", "--store", url, "-p", spec)[0] == 0
        assert SQLDeadLetters(store).list(handler="projection:parking") == []
    finally:
        app.broken["books"] = False
        store.close()
