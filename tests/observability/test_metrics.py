"""The metrics tidings records: appends, conflicts, durations, retries and dead letters."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint

from tests.observability.bank import Account, Accounts, Open, Opened, bank
from tests.observability.conftest import Telemetry
from tidings import MemoryStore, ProjectionRunner, UnitOfWork, WrongExpectedVersion
from tidings.observability import instrument


def total(telemetry: Telemetry, name: str, **attributes: object) -> int | float:
    """The sum of metric `name`'s points with these attributes."""
    found: int | float = 0
    for labels, point in telemetry.points(name):
        if all(labels.get(key) == value for key, value in attributes.items()):
            assert isinstance(point, NumberDataPoint)
            found += point.value
    return found


def test_appends_durations_retries_and_dead_letters_are_counted(telemetry: Telemetry) -> None:
    store = MemoryStore()
    bus = bank(store, [], fail_welcome=True)
    instrument(bus, meter_provider=telemetry.meter_provider)
    bus.handle(Open("acc-1"))
    bus.handle(Open("acc-2"))

    assert total(telemetry, "tidings.appends", **{"messaging.destination.name": "Account"}) == 2
    handler = "tests.observability.bank.router.<locals>.welcome"
    assert total(telemetry, "tidings.retries", **{"tidings.handler": handler}) == 2
    assert total(telemetry, "tidings.dead_letters", **{"error.type": "RuntimeError"}) == 2
    durations = {
        str(labels["tidings.message.type"]): point
        for labels, point in telemetry.points("tidings.handler.duration")
    }
    assert set(durations) == {"Open", "Opened"}
    assert isinstance(durations["Opened"], HistogramDataPoint)
    assert durations["Opened"].count == 2 and durations["Opened"].sum > 0


def test_a_commit_refused_by_a_conflict_is_counted(telemetry: Telemetry) -> None:
    store = MemoryStore()
    bank(store, []).handle(Open("acc-3"))
    instrument(meter_provider=telemetry.meter_provider)
    with UnitOfWork(store) as reader:
        stale = reader.repository(Account).get("acc-3")
    with UnitOfWork(store) as other:
        moved = other.repository(Account).get("acc-3")
        assert moved is not None
        moved.record(Opened("acc-3"))
        other.commit()
    assert stale is not None
    stale.record(Opened("acc-3"))
    with UnitOfWork(store) as late, pytest.raises(WrongExpectedVersion):
        late.repository(Account).add(stale)
        late.commit()
    assert total(telemetry, "tidings.conflicts") == 1
    assert total(telemetry, "tidings.appends") == 1


def test_a_projection_batch_is_timed_and_its_parking_counted(telemetry: Telemetry) -> None:
    store = MemoryStore()
    bus = bank(store, [])
    instrument(meter_provider=telemetry.meter_provider)
    bus.handle(Open("bad"))
    projection = Accounts()
    runner = ProjectionRunner(store, [projection], poll_interval=0.05, lease=2.0, retry_waits=False)
    with runner.running():
        deadline = time.monotonic() + 10
        while not runner.status()[0].error and time.monotonic() < deadline:
            time.sleep(0.02)
    name = "observability_accounts"
    assert total(telemetry, "tidings.retries", **{"tidings.handler": name}) == 1
    assert total(telemetry, "tidings.dead_letters", **{"tidings.parked": True}) == 1
    [(_, point)] = [
        (labels, point)
        for labels, point in telemetry.points("tidings.handler.duration")
        if labels.get("tidings.handler") == name
    ]
    assert isinstance(point, HistogramDataPoint) and point.count >= 1
