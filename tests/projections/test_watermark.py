"""Readers held back by an open transaction show in status, the CLI and the runner's log.

Only PostgreSQL holds readers back (every transaction of the cluster that has
written does, until it ends); memory and SQLite report nothing held.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.projections.ledger import backend, deposit
from tidings.cli.projections import projections_app
from tidings.projections import ProjectionRunner

SPEC = "tests.projections.ledger:LEDGERS"
PATIENCE = 10.0


@pytest.mark.postgres
def test_a_transaction_held_open_shows_in_status_cli_and_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with backend("postgres", tmp_path) as env:
        store = env.open(False)
        runner = ProjectionRunner(store, [env.ledger()], poll_interval=0.05, held_back_warning=0.3)
        caplog.set_level(logging.WARNING, logger="tidings.projections")
        try:
            with runner.running():
                with store.transaction() as held:
                    held.append("Account-held", [deposit("held", 5)])
                    later = [store.append(f"Account-{i}", [deposit(f"a{i}", 1)]) for i in range(4)]
                    deadline = time.monotonic() + PATIENCE
                    while "held back" not in caplog.text and time.monotonic() < deadline:
                        time.sleep(0.02)
                    [status] = runner.status()
                    out = (
                        CliRunner()
                        .invoke(
                            projections_app, ["status", "--store", env.url, "-p", SPEC, "--json"]
                        )
                        .stdout
                    )
                    text = (
                        CliRunner()
                        .invoke(projections_app, ["status", "--store", env.url, "-p", SPEC])
                        .stdout
                    )
                    held.rollback()
                runner.wait_for("ledger", later[-1].positions[-1], timeout=PATIENCE)
                [after] = runner.status()
        finally:
            store.close()

    assert "readers of the log are held back" in caplog.text
    record = next(r for r in caplog.records if "held back" in r.getMessage())
    assert record.levelno == logging.WARNING
    # Later commits wait unseen; others' transactions may hold back more, never less.
    assert status.held_back >= 4
    assert status.held_for is not None and status.held_for >= 0.3
    assert status.lag == 0
    [line] = [json.loads(line) for line in out.splitlines()]
    assert line["held_back"] >= 4 and line["held_for"] >= 0.3
    assert "held back" in text
    assert after.lag == 0


@pytest.mark.parametrize("name", ["memory", "sqlite"])
def test_backends_that_commit_in_turn_hold_nothing_back(name: str, tmp_path: Path) -> None:
    with backend(name, tmp_path) as env:
        store = env.open(False)
        try:
            runner = ProjectionRunner(store, [env.ledger()])
            (position,) = store.append("Account-1", [deposit("a1", 1)]).positions
            with store.transaction() as tx:
                tx.append("Account-2", [deposit("a2", 1)])
                mark = store.watermark()
            [status] = runner.status()
        finally:
            store.close()
    assert (mark.head, mark.last_position, mark.held_back, mark.held_for) == (
        position,
        position,
        0,
        0.0,
    )
    assert (status.held_back, status.held_for) == (0, 0.0)
