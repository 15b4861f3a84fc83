"""The ids of the message concerned as `extra` fields, and the JSON formatter."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from tests.observability.bank import Accounts, Open, bank
from tidings import MemoryStore, ProjectionRunner
from tidings.observability import FIELDS, JsonFormatter

HANDLER = "tests.observability.bank.router.<locals>.welcome"


def test_a_failing_event_handler_logs_the_ids_of_its_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    caplog.set_level(logging.WARNING, logger="tidings.bus")
    bank(store, [], fail_welcome=True).handle(Open("acc-1"))
    [record] = store.read_all()
    retried, dead = [r for r in caplog.records if r.name == "tidings.bus"]
    for logged in (retried, dead):
        assert vars(logged)["message_id"] == str(record.event_id)
        assert vars(logged)["correlation_id"] == str(record.correlation_id)
        assert vars(logged)["message_type"] == "Opened"
        assert vars(logged)["stream"] == "Account-acc-1"
        assert vars(logged)["position"] == record.position
        assert vars(logged)["handler"] == HANDLER
    assert retried.levelno == logging.WARNING and dead.levelno == logging.ERROR


def test_a_parked_projection_logs_the_event_it_stopped_at(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    bank(store, []).handle(Open("bad"))
    caplog.set_level(logging.WARNING, logger="tidings.projections")
    runner = ProjectionRunner(store, [Accounts()], poll_interval=0.05, lease=2.0, retry_waits=False)
    with runner.running():
        deadline = time.monotonic() + 10
        while not runner.status()[0].error and time.monotonic() < deadline:
            time.sleep(0.02)
    [record] = store.read_all()
    [parked] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert vars(parked)["handler"] == "observability_accounts"
    assert vars(parked)["position"] == record.position
    assert vars(parked)["message_id"] == str(record.event_id)
    assert vars(parked)["causation_id"] == str(record.causation_id)


def test_the_json_formatter_writes_one_object_with_every_extra() -> None:
    logger = logging.getLogger("tests.observability.json")
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "handler %s failed",
        ("welcome",),
        None,
        extra={"message_id": "m-1", "position": 7, "handler": "welcome"},
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    written = json.loads(line)
    assert written["message"] == "handler welcome failed"
    assert written["level"] == "ERROR" and written["logger"] == logger.name
    assert (written["message_id"], written["position"], written["handler"]) == ("m-1", 7, "welcome")
    assert written["error"] == "RuntimeError" and "boom" in written["exception"]
    assert written["time"].endswith("+00:00")
    assert "args" not in written and "msg" not in written
    assert set(FIELDS) >= {"message_id", "correlation_id", "causation_id", "stream", "position"}
