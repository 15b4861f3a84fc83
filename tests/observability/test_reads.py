"""Spans of reading the log and loading aggregates, on every backend, blocking and async."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.observability.bank import Account, Opened
from tests.observability.conftest import Telemetry
from tests.store.backends import BACKENDS
from tests.store.readable import readable, wait_readable
from tidings import AsyncUnitOfWork, MemoryStore, UnitOfWork, UnknownEventType, new_id
from tidings.observability import instrument
from tidings.store import NewEvent

SYSTEMS = {"memory": "memory", "sqlite": "sqlite", "postgres": "postgresql"}


def blocking_reads(store: Any, telemetry: Telemetry) -> None:
    with UnitOfWork(store) as uow:
        account = Account("acc-1")
        account.record(Opened("acc-1"))
        uow.repository(Account).add(account)
        uow.commit()
    wait_readable(store)  # another session's transaction may hold `$all` back on PostgreSQL
    instrument(tracer_provider=telemetry.tracer_provider)
    with UnitOfWork(store) as uow:
        assert uow.repository(Account).get("acc-1") is not None
        assert uow.repository(Account).get("nobody") is None
    assert len(store.read_all(limit=10)) == 1  # outside any trace: no span
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("request"):
        assert len(store.read_stream("Account-acc-1")) == 1
        assert len(store.read_all(limit=10)) == 1
    store.close()


async def async_reads(store: Any, telemetry: Telemetry) -> None:
    async with AsyncUnitOfWork(store) as uow:
        account = Account("acc-1")
        account.record(Opened("acc-1"))
        await uow.repository(Account).add(account)
        await uow.commit()
    await readable(store)
    instrument(tracer_provider=telemetry.tracer_provider)
    async with AsyncUnitOfWork(store) as uow:
        assert await uow.repository(Account).get("acc-1") is not None
        assert await uow.repository(Account).get("nobody") is None
    assert len(await store.read_all(limit=10)) == 1  # outside any trace: no span
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("request"):
        assert len(await store.read_stream("Account-acc-1")) == 1
        assert len(await store.read_all(limit=10)) == 1
    await store.aclose()


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


@pytest.mark.parametrize("asynchronous", [False, True], ids=["blocking", "async"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_reads_and_loads_are_database_spans(
    telemetry: Telemetry, tmp_path: Path, backend: str, asynchronous: bool
) -> None:
    with BACKENDS[backend](tmp_path) as open_store:
        store = open_store(asynchronous)
        if asynchronous:
            anyio.run(async_reads, store, telemetry)
        else:
            blocking_reads(store, telemetry)
    spans = telemetry.spans.get_finished_spans()
    system = SYSTEMS[backend]

    [load] = [s for s in spans if s.name == "load Account-acc-1"]
    assert load.kind is SpanKind.INTERNAL
    assert attributes(load) == {
        "tidings.aggregate": "Account",
        "tidings.stream": "Account-acc-1",
        "tidings.version": 1,
        "tidings.replayed": 1,
    }
    [loaded_read, read] = [s for s in spans if s.name == "read_stream Account-acc-1"]
    assert load.context is not None and loaded_read.parent is not None
    assert loaded_read.parent.span_id == load.context.span_id
    [request] = [s for s in spans if s.name == "request"]
    assert request.context is not None and read.parent is not None
    assert read.parent.span_id == request.context.span_id
    for span in (loaded_read, read):
        assert span.kind is SpanKind.CLIENT
        assert attributes(span) == {
            "db.system": system,
            "db.operation.name": "read_stream",
            "db.collection.name": "Account-acc-1",
            "db.response.returned_rows": 1,
        }

    [missing] = [s for s in spans if s.name == "load Account-nobody"]
    assert attributes(missing) == {
        "tidings.aggregate": "Account",
        "tidings.stream": "Account-nobody",
        "tidings.replayed": 0,
    }
    [missing_read] = [s for s in spans if s.name == "read_stream Account-nobody"]
    assert attributes(missing_read)["db.response.returned_rows"] == 0

    [page] = [s for s in spans if s.name == "read_all $all"]  # the one within the request
    assert page.parent is not None and page.parent.span_id == request.context.span_id
    assert page.kind is SpanKind.CLIENT
    assert attributes(page) == {
        "db.system": system,
        "db.operation.name": "read_all",
        "db.collection.name": "$all",
        "db.response.returned_rows": 1,
    }


def test_a_load_that_fails_has_the_error_on_its_span(telemetry: Telemetry) -> None:
    store = MemoryStore()
    unknown = new_id()
    store.append(
        "Account-acc-2",
        [NewEvent(unknown, "nobody.Knows", 1, b"{}", unknown, None, datetime.now(UTC))],
    )
    instrument(tracer_provider=telemetry.tracer_provider)
    with UnitOfWork(store) as uow, pytest.raises(UnknownEventType):
        uow.repository(Account).get("acc-2")
    [load] = [s for s in telemetry.spans.get_finished_spans() if s.name == "load Account-acc-2"]
    assert load.status.status_code is StatusCode.ERROR
    assert attributes(load)["error.type"] == "UnknownEventType"
    assert [event.name for event in load.events] == ["exception"]
