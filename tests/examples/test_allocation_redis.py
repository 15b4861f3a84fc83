"""The allocation service on Redis, as the book's end-to-end test drives it, against real Redis.

Batches are made and a line allocated over HTTP; `change_batch_quantity`
is published on Redis; the line the batch gives up is allocated again, and
`line_allocated` carries that allocation, within a bounded time. Messages
that are not the protocol's are dropped and the service carries on; without
Redis configured, nothing of it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.allocation.channels import (
    CHANGE_BATCH_QUANTITY,
    LINE_ALLOCATED,
    REDIS_URL_ENV,
    RELAY_NAME,
)
from tests.examples.service import ROOT, Service, running_service
from tests.transports.brokers import REDIS_URL, redis_connect

WAIT = 10.0
"""Seconds a message may take to come back (the relay polls the log every 0.2 s)."""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    redis_connect()  # skip, or fail under CI, without Redis
    workdir = tmp_path_factory.mktemp(f"redis-{request.param}")
    with running_service(request.param, workdir, ["--redis", REDIS_URL]) as service:
        yield service


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        client.close()


def random_ref(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def post(service: Service, path: str, body: Any) -> Any:
    with service.client() as client:
        response = client.post(path, json=body)
    assert response.status_code < 300, response.text
    return response.json()


def wait_subscribed(client: Any, channel: str) -> None:
    """Until the service has subscribed to `channel`: pub/sub drops what nobody hears."""
    deadline = time.monotonic() + WAIT
    while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        assert time.monotonic() < deadline, f"nobody subscribed to {channel}"
        time.sleep(0.05)


def allocations_heard(
    subscription: Any, orderid: str, wanted: int = 1, within: float = WAIT
) -> list[dict[str, Any]]:
    """The `line_allocated` messages of `orderid`, once `wanted` have come, within `within` s."""
    heard: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while len(heard) < wanted and time.monotonic() < deadline:
        message = subscription.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None:
            continue
        data = json.loads(message["data"])
        if data["orderid"] == orderid:
            heard.append(data)
    return heard


@pytest.mark.brokers
def test_change_batch_quantity_leading_to_reallocation(service: Service, redis_client: Any) -> None:
    reallocation(service, redis_client)


def reallocation(service: Service, redis_client: Any) -> None:
    """The book's end-to-end test: a batch shrinks, its line is allocated again, and told."""
    orderid, sku = random_ref("order"), random_ref("SKU")
    earlier_batch, later_batch = random_ref("old"), random_ref("newer")
    post(service, "/add_batch", {"ref": earlier_batch, "sku": sku, "qty": 10, "eta": "2011-01-01"})
    post(service, "/add_batch", {"ref": later_batch, "sku": sku, "qty": 10, "eta": "2011-01-02"})
    subscription = redis_client.pubsub()
    subscription.subscribe(LINE_ALLOCATED)
    allocated = post(service, "/allocate", {"orderid": orderid, "sku": sku, "qty": 10})
    assert allocated["batchref"] == earlier_batch
    first = allocations_heard(subscription, orderid)
    assert first == [{"orderid": orderid, "sku": sku, "qty": 10, "batchref": earlier_batch}]

    wait_subscribed(redis_client, CHANGE_BATCH_QUANTITY)
    # Another service on the same Redis (a test's, or one just stopping) may be the subscriber
    # counted, and it drops a batch it does not know; the change is idempotent, so say it again.
    change = json.dumps({"batchref": earlier_batch, "qty": 5})
    deadline = time.monotonic() + WAIT
    heard: list[dict[str, Any]] = []
    while not heard and time.monotonic() < deadline:
        redis_client.publish(CHANGE_BATCH_QUANTITY, change)
        heard = allocations_heard(subscription, orderid, within=1.0)

    (again,) = heard
    assert again == {"orderid": orderid, "sku": sku, "qty": 10, "batchref": later_batch}
    subscription.close()
    with service.client() as client:
        rows = client.get(f"/allocations/{orderid}").json()
    assert rows == [{"sku": sku, "batchref": later_batch}]


@pytest.mark.brokers
@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"batchref": 5, "qty": 5}',
        b'{"batchref": "b", "qty": -1}',
        b'{"qty": 5}',
        b"[]",
        b'{"batchref": "no-such-batch", "qty": 5}',
    ],
    ids=["bad-json", "wrong-type", "negative", "missing", "not-an-object", "unknown-batch"],
)
def test_a_message_out_of_protocol_is_logged_and_the_service_carries_on(
    service: Service, redis_client: Any, payload: bytes
) -> None:
    orderid, sku = random_ref("order"), random_ref("SKU")
    first_batch, second_batch = random_ref("first"), random_ref("second")
    post(service, "/add_batch", {"ref": first_batch, "sku": sku, "qty": 10, "eta": "2011-01-01"})
    post(service, "/add_batch", {"ref": second_batch, "sku": sku, "qty": 10, "eta": "2011-01-02"})
    post(service, "/allocate", {"orderid": orderid, "sku": sku, "qty": 10})
    subscription = redis_client.pubsub()
    subscription.subscribe(LINE_ALLOCATED)
    wait_subscribed(redis_client, CHANGE_BATCH_QUANTITY)

    redis_client.publish(CHANGE_BATCH_QUANTITY, payload)
    redis_client.publish(CHANGE_BATCH_QUANTITY, json.dumps({"batchref": first_batch, "qty": 0}))

    heard = allocations_heard(subscription, orderid, wanted=2)
    subscription.close()
    assert {"orderid": orderid, "sku": sku, "qty": 10, "batchref": second_batch} in heard
    deadline = time.monotonic() + WAIT
    while f"{CHANGE_BATCH_QUANTITY}: " not in service.log():
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.05)
    assert service.log().count("Traceback") == 0  # refused, not failed


def test_without_redis_the_service_runs_no_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIDINGS_REDIS_URL", raising=False)  # as `make run` starts it
    with running_service("sqlite", tmp_path) as service:
        post(service, "/add_batch", {"ref": "b1", "sku": "LAMP", "qty": 10, "eta": None})
        post(service, "/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 2})
        assert "Redis" not in service.log()
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(tmp_path / "allocation.db")) as connection:
        names = [name for (name,) in connection.execute("SELECT name FROM tidings_projections")]
    assert RELAY_NAME not in names
    assert names  # the read model's row is there: the table is the one looked at


@pytest.mark.brokers
def test_the_relay_and_the_consumer_run_as_tidings_commands_of_their_own(
    tmp_path: Path, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_connect()
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with running_service("sqlite", tmp_path) as service:  # the HTTP service without Redis
        env = {**os.environ, REDIS_URL_ENV: REDIS_URL}
        commands = [
            subprocess.Popen(
                [sys.executable, "-m", "tidings", *args, "--store", service.store_url],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in (
                ["relay", "examples.allocation.channels:relay", "--poll-interval", "0.2"],
                ["consume", "examples.allocation.channels:consumer"],
            )
        ]
        try:
            reallocation(service, redis_client)
        finally:
            for command in commands:
                command.send_signal(signal.SIGTERM)
        for command in commands:
            _, errors = command.communicate(timeout=20)
            assert command.returncode == 0, errors
            assert "connected" in errors
