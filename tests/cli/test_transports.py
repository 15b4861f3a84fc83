"""`tidings relay` and `tidings consume`: started, stopped by a signal, and across broker restarts.

Each test runs the commands as processes of their own on an application of
the tests (`tests.cli.transport_app`: a relay, and a consumer that bills
orders) against a broker the test started itself on a free port, so it can
kill the broker and start it again without disturbing anyone else's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.brokers import OwnBroker, free_port, own_nats, own_redis
from tests.cli.conftest import ROOT, run_tidings
from tests.cli.transport_app import BROKER_ENV, NAMESPACE_ENV
from tests.transports.app import CODEC, placed
from tests.transports.billing import billed
from tidings import (
    AsyncInbox,
    AsyncProjectionRunner,
    AsyncSQLDeadLetters,
    BrokerMessage,
    OutboxRelay,
    ProjectionState,
)
from tidings.store.urls import open_async_store

APP = "tests.cli.transport_app"
ORDERS = 40


class Command:
    """A `tidings relay` or `tidings consume` process, its log in a file."""

    def __init__(self, log: Path, *args: str, env: dict[str, str]) -> None:
        self.log = log
        self.args = args
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings", *args],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            assert self.process.poll() is None, f"{self.args[0]} ended:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()}"
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, and its exit status once it has finished."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def commands() -> Iterator[Callable[..., Command]]:
    started: list[Command] = []

    def start(log: Path, *args: str, env: dict[str, str]) -> Command:
        command = Command(log, *args, env=env)
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()


@pytest.fixture(params=["redis", "nats"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnBroker]:
    own = own_redis(tmp_path) if request.param == "redis" else own_nats(tmp_path)
    own.start()
    try:
        yield own
    finally:
        own.kill()


async def _place(url: str, wave: int) -> None:
    store = open_async_store(url)
    await store.append(f"Order-{wave}", [placed(f"{wave}-{n}", n) for n in range(ORDERS)])
    await store.aclose()


async def _handled(url: str) -> int:
    store = open_async_store(url)
    try:
        return await AsyncInbox(store, "billing").count()
    finally:
        await store.aclose()


async def _outcome(producer_url: str, consumer_url: str) -> tuple[list[str], list[str], int]:
    producer, consumer = open_async_store(producer_url), open_async_store(consumer_url)
    placed_ids = [str(record.event_id) for record in await producer.read_all()]
    rows = await billed(consumer)
    letters = await AsyncSQLDeadLetters(consumer, codec=CODEC).count()
    await producer.aclose()
    await consumer.aclose()
    return placed_ids, rows, letters


class _Nowhere:
    """A publisher for a relay that is only asked for its status."""

    async def publish(self, message: BrokerMessage) -> None:
        raise AssertionError("not to be published")

    async def aclose(self) -> None:
        pass


async def _relay_status(url: str) -> tuple[ProjectionState, int, int, str | None]:
    store = open_async_store(url)
    try:
        runner = AsyncProjectionRunner(store, [OutboxRelay(_Nowhere(), name="outbox")])
        (found,) = await runner.status()
        return found.state, found.position, found.head, found.owner
    finally:
        await store.aclose()


def _wait_handled(url: str, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (count := asyncio.run(_handled(url))) < expected:
        assert time.monotonic() < deadline, f"{count} of {expected} handled"
        time.sleep(0.1)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[str, str]:
    """The producer's and the consumer's SQLite stores, both made."""
    urls = (f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'billing.db'}")
    for url in urls:
        assert run_tidings("db", "init", "--store", url).returncode == 0
    return urls


def _env(broker: OwnBroker) -> dict[str, str]:
    return {BROKER_ENV: broker.url, NAMESPACE_ENV: f"t{free_port()}"}


# Start-up failures: one line, status 2, nothing connected.


@pytest.mark.parametrize("command", ["relay", "consume"])
def test_a_store_that_is_not_there_ends_the_command_with_status_2(
    command: str, tmp_path: Path
) -> None:
    result = run_tidings(command, f"{APP}:relay", "--store", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"tidings {command}: error: no event store at")


@pytest.mark.parametrize("server", ["refusing", "silent"])
@pytest.mark.parametrize("command", ["relay", "consume"])
def test_an_unreachable_postgres_store_ends_the_command_with_status_2(
    command: str, server: str
) -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as silent:
        if server == "silent":  # takes connections in its backlog, never says a word
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
        else:
            port = free_port()
        url = f"postgresql://postgres@127.0.0.1:{port}/test"
        started = time.monotonic()
        result = run_tidings(command, f"{APP}:consumer", "--store", url)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 20
    assert result.stderr.count("\n") == 1
    assert "cannot connect to the PostgreSQL store" in result.stderr


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (f"{APP}:not_a_function", "has no function 'not_a_function'"),
        (f"{APP}:missing", "has no function 'missing'"),
        ("tests.cli.no_such_module:relay", "cannot import"),
        ("no-colon", "is not MODULE:ATTRIBUTE"),
    ],
)
def test_an_app_that_names_no_function_is_refused_with_status_2(
    spec: str, reason: str, tmp_path: Path
) -> None:
    result = run_tidings("relay", spec, "--store", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert reason in result.stderr


# Running, and stopping on a signal.


def test_sigterm_stops_both_after_their_work_with_status_0(
    broker: OwnBroker,
    stores: tuple[str, str],
    tmp_path: Path,
    commands: Callable[..., Command],
) -> None:
    producer_url, consumer_url = stores
    env = _env(broker)
    consumer = commands(
        tmp_path / "consume.log", "consume", f"{APP}:consumer", "--store", consumer_url, env=env
    )
    consumer.wait_for("connected")
    asyncio.run(_place(producer_url, 0))
    relay = commands(
        tmp_path / "relay.log",
        "relay",
        f"{APP}:relay",
        "--store",
        producer_url,
        "--poll-interval",
        "0.1",
        env=env,
    )
    _wait_handled(consumer_url, ORDERS)
    assert relay.stop() == 0, relay.text()
    assert consumer.stop() == 0, consumer.text()
    assert "SIGTERM: stopping after what is in hand" in relay.text()
    state, position, head, owner = asyncio.run(_relay_status(producer_url))
    assert (position, owner) == (head, None)  # checkpointed at the head, lease given back
    assert state is ProjectionState.STOPPED


# Across a broker restart: nothing lost, nothing doubled.


def test_the_relay_and_the_consumer_carry_on_across_a_broker_restart(
    broker: OwnBroker,
    stores: tuple[str, str],
    tmp_path: Path,
    commands: Callable[..., Command],
) -> None:
    producer_url, consumer_url = stores
    env = _env(broker)
    consumer = commands(
        tmp_path / "consume.log",
        "consume",
        f"{APP}:consumer",
        "--store",
        consumer_url,
        "--max-backoff",
        "1",
        env=env,
    )
    consumer.wait_for("connected")
    relay = commands(
        tmp_path / "relay.log",
        "relay",
        f"{APP}:relay",
        "--store",
        producer_url,
        "--poll-interval",
        "0.1",
        "--max-backoff",
        "1",
        env=env,
    )
    relay.wait_for("connected")
    asyncio.run(_place(producer_url, 0))
    _wait_handled(consumer_url, ORDERS)

    broker.kill()
    asyncio.run(_place(producer_url, 1))  # committed while the broker is down
    relay.wait_for("connecting again")  # the relay parked, and reconnects
    time.sleep(1.0)
    broker.start()
    relay.wait_for("connected", count=2)
    asyncio.run(_place(producer_url, 2))
    _wait_handled(consumer_url, 3 * ORDERS)

    assert relay.stop() == 0, relay.text()
    assert consumer.stop() == 0, consumer.text()
    placed_ids, rows, letters = asyncio.run(_outcome(producer_url, consumer_url))
    assert len(placed_ids) == 3 * ORDERS
    assert Counter(rows) == Counter(placed_ids)  # every order billed, and once
    assert letters == 0
    retries = [line for line in relay.text().splitlines() if "connecting again" in line]
    assert retries and all("retry" in line for line in retries)
    assert "relay outbox: parked at position" in retries[0]  # the cause, not the disconnection
    assert "Traceback" not in relay.text() + consumer.text()  # each record one line
