"""Spans of dispatch, appends and projection batches, joined into one trace by the event headers."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.observability.bank import Account, Accounts, Open, Opened, bank
from tests.observability.conftest import Telemetry
from tidings import (
    AsyncMemoryStore,
    AsyncMessageBus,
    AsyncUnitOfWork,
    Envelope,
    MemoryStore,
    PerCall,
    ProjectionRunner,
    Router,
    Saga,
    SagaRunner,
    SQLiteStore,
    Step,
    StepContext,
)
from tidings.observability import instrument


def named(telemetry: Telemetry, name: str) -> ReadableSpan:
    [span] = [s for s in telemetry.spans.get_finished_spans() if s.name == name]
    return span


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_command_its_append_and_its_event_handler_are_one_trace(telemetry: Telemetry) -> None:
    store = MemoryStore()
    welcomed: list[str] = []
    bus = bank(store, welcomed)
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    tracer = telemetry.tracer_provider.get_tracer("web")
    with tracer.start_as_current_span("POST /accounts"):  # as a web framework's would be
        bus.handle(Open("acc-1"))
    assert welcomed == ["acc-1"]

    request = named(telemetry, "POST /accounts")
    command = named(telemetry, "process Open")
    append = named(telemetry, "send Account-acc-1")
    handler = named(telemetry, "process Opened")
    assert parent_id(command) == span_id(request)
    assert parent_id(append) == span_id(command)
    assert parent_id(handler) == span_id(append)
    assert len({s.context.trace_id for s in (request, command, append, handler) if s.context}) == 1
    assert append.kind is SpanKind.PRODUCER and handler.kind is SpanKind.CONSUMER

    [record] = store.read_all()
    assert command.attributes is not None and handler.attributes is not None
    assert command.attributes["messaging.system"] == "tidings"
    assert command.attributes["messaging.operation.type"] == "process"
    assert handler.attributes["messaging.message.id"] == str(record.event_id)
    assert handler.attributes["messaging.message.conversation_id"] == str(record.correlation_id)
    assert handler.attributes["messaging.destination.name"] == "Account-acc-1"
    assert command.attributes["messaging.message.conversation_id"] == str(record.correlation_id)
    assert append.attributes is not None
    assert append.attributes["messaging.operation.type"] == "send"


def test_an_appended_event_carries_the_traceparent_of_its_append(telemetry: Telemetry) -> None:
    store = MemoryStore()
    bus = bank(store, [])
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    bus.handle(Open("acc-2"))
    [record] = store.read_all()
    headers = json.loads(record.headers)
    version, trace_id, parent, flags = headers["traceparent"].split("-")
    append = named(telemetry, "send Account-acc-2")
    assert append.context is not None
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == append.context.trace_id
    assert int(parent, 16) == append.context.span_id


def test_a_projection_batch_links_to_the_appends_of_its_events(telemetry: Telemetry) -> None:
    store = MemoryStore()
    bus = bank(store, [])
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    bus.handle(Open("acc-3"))
    bus.handle(Open("acc-4"))
    projection = Accounts()
    runner = ProjectionRunner(store, [projection], poll_interval=0.05, lease=2.0)
    with runner.running():
        runner.wait_for(projection.name, store.read_all()[-1].position)
    assert projection.seen == ["acc-3", "acc-4"]

    spans = telemetry.spans.get_finished_spans()
    batches = [s for s in spans if s.name == "process observability_accounts"]
    linked = {link.context.span_id for batch in batches for link in batch.links}
    appends = {span_id(named(telemetry, f"send Account-acc-{n}")) for n in (3, 4)}
    assert linked == appends
    assert all(batch.kind is SpanKind.CONSUMER for batch in batches)
    assert batches[0].attributes is not None
    assert batches[0].attributes["messaging.consumer.group.name"] == "observability_accounts"


def test_without_instrumenting_events_carry_no_trace_headers() -> None:
    store = MemoryStore()
    bank(store, []).handle(Open("acc-5"))
    [record] = store.read_all()
    assert record.headers == b""


def test_the_async_bus_traces_its_messages_and_appends(telemetry: Telemetry) -> None:
    store = AsyncMemoryStore()
    router = Router()
    handled: list[str] = []

    @router.handler
    async def open_account(command: Open, uow: AsyncUnitOfWork) -> None:
        async with uow:
            account = Account(command.account_id)
            account.record(Opened(command.account_id))
            await uow.repository(Account).add(account)
            await uow.commit()

    @router.handler
    async def welcome(event: Opened) -> None:
        handled.append(event.account_id)

    bus = AsyncMessageBus(router, dependencies={"uow": PerCall(lambda: AsyncUnitOfWork(store))})
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    anyio.run(bus.handle, Open("acc-6"))
    assert handled == ["acc-6"]
    command = named(telemetry, "process Open")
    append = named(telemetry, "send Account-acc-6")
    handler = named(telemetry, "process Opened")
    assert parent_id(append) == span_id(command)
    assert parent_id(handler) == span_id(append)


def test_an_event_received_with_a_trace_context_continues_that_trace(
    telemetry: Telemetry,
) -> None:
    welcomed: list[str] = []
    bus = bank(MemoryStore(), welcomed)
    instrument(bus, tracer_provider=telemetry.tracer_provider)
    producer = telemetry.tracer_provider.get_tracer("elsewhere").start_span("send Account-x")
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(producer))
    producer.end()
    # As a consumer hands over what a broker delivered: the envelope with its headers.
    bus.handle(Envelope.new(Opened("acc-7"), headers=carrier))
    assert welcomed == ["acc-7"]
    handler = named(telemetry, "process Opened")
    assert producer.get_span_context().span_id == parent_id(handler)


def test_each_saga_step_is_a_span_failing_ones_with_their_error(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    def refuse(context: StepContext) -> None:
        raise RuntimeError("no hotel")

    store = SQLiteStore(str(tmp_path / "events.db"))
    instrument(tracer_provider=telemetry.tracer_provider)
    trip = Saga("ObservedTrip", [Step("flight", lambda context: None), Step("hotel", refuse)])
    state = SagaRunner(store, [trip]).start("ObservedTrip", "t1", {})
    store.close()
    assert state.error == "RuntimeError: no hotel"
    flight = named(telemetry, "step ObservedTrip.flight")
    hotel = named(telemetry, "step ObservedTrip.hotel")
    assert flight.status.status_code is StatusCode.UNSET
    assert hotel.status.status_code is StatusCode.ERROR
    assert hotel.attributes is not None
    assert hotel.attributes["tidings.stream"] == "ObservedTrip-t1"
