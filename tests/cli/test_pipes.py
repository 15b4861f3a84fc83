"""Output to a pipe is not cut to 80 columns: each line holds its whole stream name and payload."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import pytest

from tests.cli.conftest import ROOT, Store
from tests.cli.sample import OrderPlaced
from tidings.messages import Envelope

LONG_ID = "order-" + "7" * 150
STREAM = f"Order-{LONG_ID.replace('-', '')}"


def piped(*args: str, columns: str | None = None) -> list[str]:
    """The lines `python -m tidings args...` writes into a pipe, COLUMNS unset unless given."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    result = subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def envelope(store: Store) -> Envelope[OrderPlaced]:
    placed = Envelope.new(OrderPlaced(LONG_ID, Decimal("12.50")))
    store.append(STREAM, placed)
    return placed


def test_events_into_a_pipe_keep_every_column_whole(
    store: Store, envelope: Envelope[OrderPlaced]
) -> None:
    header, line = piped("events", "--store", store.url)
    assert header.split() == [
        "position",
        "stream",
        "version",
        "type",
        "time",
        "correlation",
        "data",
    ]
    assert f"  {STREAM}  " in line
    assert str(envelope.correlation_id) in line
    assert line.rstrip().endswith(f'{{"order_id":"{LONG_ID}","total":"12.50"}}')
    narrow = piped("events", "--store", store.url, columns="80")
    assert max(len(line) for line in narrow) <= 80  # COLUMNS still sets a width


def test_streams_and_trace_into_a_pipe_give_one_whole_line_each(
    store: Store, envelope: Envelope[OrderPlaced]
) -> None:
    _, line = piped("streams", "--store", store.url)
    assert line.split() == [STREAM, "Order", "1"]
    _, label = piped("trace", str(envelope.correlation_id), "--store", store.url)[:2]
    assert STREAM in label and LONG_ID in label
