"""A PostgreSQL server that is down or does not answer ends any command at once, in one line."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.cli.conftest import invoke, run_tidings
from tidings.cli.options import CONNECT_TIMEOUT

pytest.importorskip("psycopg")

POOL_TIMEOUT = 30.0  # how long a store waits for a connection by default

# Every command that opens the store, through the one place that opens it.
COMMANDS = [
    ["db", "init"],
    ["db", "migrate"],
    ["events"],
    ["streams"],
    ["trace", str(uuid.uuid4())],
    ["tail"],
    ["projections", "status", "-p", "tests.projections.ledger:LEDGERS"],
    ["dlq", "list"],
    ["dlq", "show", str(uuid.uuid4())],
]


@pytest.fixture
def refused_url() -> str:
    """A PostgreSQL URL on a local port that nothing listens on (the port was free just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://tidings:secret@127.0.0.1:{port}/events?schema=orders"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A PostgreSQL URL on a port that takes connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # connections complete in the backlog, and are never served
        yield f"postgresql://127.0.0.1:{server.getsockname()[1]}/events"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_refused_connection_ends_the_command_at_once_in_one_line(
    command: list[str], refused_url: str
) -> None:
    started = time.monotonic()
    result = run_tidings(*command, "--store", refused_url)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    # At once: the store's pool would retry for its whole 30 s timeout. The bound
    # leaves room for a new interpreter's imports on a loaded machine.
    assert elapsed < POOL_TIMEOUT / 2, elapsed
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "tidings: error: cannot connect to the PostgreSQL store "
        f"{refused_url.replace('secret', '***')}: connection failed: "
    ), line
    assert "Connection refused" in line
    assert "secret" not in result.stderr


@pytest.mark.parametrize("command", [["db", "init"], ["streams"]], ids=" ".join)
def test_a_server_that_does_not_answer_is_given_up_on_after_the_connect_timeout(
    command: list[str], silent_url: str
) -> None:
    started = time.monotonic()
    result = invoke(*command, "--store", silent_url)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert CONNECT_TIMEOUT - 0.5 < elapsed < CONNECT_TIMEOUT + 2, elapsed
    assert result.stdout == ""
    assert result.stderr == (
        f"tidings: error: cannot connect to the PostgreSQL store {silent_url}: "
        "connection timeout expired\n"
    )


@pytest.mark.parametrize("where", ["url", "environment"])
def test_a_connect_timeout_given_by_the_user_is_kept(
    where: str, silent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "environment":
        monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    url = f"{silent_url}?connect_timeout=2" if where == "url" else silent_url
    started = time.monotonic()
    result = invoke("streams", "--store", url)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert elapsed < CONNECT_TIMEOUT - 0.5, elapsed
    assert result.stderr == (
        f"tidings: error: cannot connect to the PostgreSQL store {url}: "
        "connection timeout expired\n"
    )
