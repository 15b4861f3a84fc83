"""Handlers that send commands: `Send` and `AsyncSend`, provided by the bus to every handler."""

import asyncio
import logging
from dataclasses import dataclass
from uuid import uuid4

import pytest

from tidings import (
    AsyncMessageBus,
    AsyncSend,
    Codec,
    Command,
    ConfigurationError,
    Envelope,
    Event,
    EventSourced,
    MemoryStore,
    MessageBus,
    ProjectionRunner,
    Retry,
    Router,
    Send,
    UnitOfWork,
    applies,
    durable_handlers,
)


@dataclass(frozen=True)
class Allocated(Event, type_name="send_tests.Allocated"):
    order_id: str


@dataclass(frozen=True)
class NotifyCustomer(Command):
    order_id: str


@dataclass(frozen=True)
class CustomerNotified(Event, type_name="send_tests.CustomerNotified"):
    order_id: str


def notifying(sent: list[Envelope[NotifyCustomer]], fail: bool = False) -> Router:
    """An event handler sending `NotifyCustomer`, whose handler records its envelope."""
    router = Router()

    @router.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        assert send(NotifyCustomer(event.order_id)) == f"notified {event.order_id}"

    @router.handler
    def notify(command: NotifyCustomer, envelope: Envelope[NotifyCustomer]) -> str:
        sent.append(envelope)
        if fail:
            raise ConnectionError("the mail server is down")
        return f"notified {command.order_id}"

    return router


def test_a_command_sent_by_an_event_handler_continues_the_conversation() -> None:
    sent: list[Envelope[NotifyCustomer]] = []
    event = Envelope.new(Allocated("o1"), correlation_id=uuid4())
    MessageBus(notifying(sent)).handle(event)
    (command,) = sent
    assert command.message == NotifyCustomer("o1")
    assert command.correlation_id == event.correlation_id
    assert command.causation_id == event.message_id


class Customer(EventSourced):
    @classmethod
    def notify(cls, order_id: str) -> "Customer":
        customer = cls(order_id)
        customer.record(CustomerNotified(order_id))
        return customer

    @applies
    def _notified(self, event: CustomerNotified) -> None:
        pass


def test_send_returns_once_the_command_and_the_events_it_committed_are_handled() -> None:
    trail: list[str] = []
    router = Router()

    @router.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        trail.append(send(NotifyCustomer(event.order_id)))

    @router.handler
    def notify(command: NotifyCustomer, uow: UnitOfWork) -> str:
        with uow:
            uow.repository(Customer).add(Customer.notify(command.order_id))
            uow.commit()
        return f"notified {command.order_id}"

    @router.handler
    def on_notified(event: CustomerNotified) -> None:
        trail.append(f"{event.order_id} told")

    MessageBus(router, dependencies={"uow": UnitOfWork(MemoryStore())}).handle(Allocated("o2"))
    assert trail == ["o2 told", "notified o2"]


def test_a_failing_sent_command_fails_the_event_handler_which_is_retried_then_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Envelope[NotifyCustomer]] = []
    bus = MessageBus(notifying(sent, fail=True), retry=Retry(attempts=2), retry_waits=False)
    with caplog.at_level(logging.ERROR, logger="tidings.bus"):
        assert bus.handle(Allocated("o3")) is None  # the sender of the event is not failed
    assert len(sent) == 2  # the event handler was retried, and sent the command again
    (letter,) = bus.dead_letters.list()
    assert letter.handler.endswith("on_allocated")
    assert letter.error == "ConnectionError: the mail server is down"
    assert f"handler {letter.handler} failed on Allocated" in caplog.text


def test_a_failing_sent_command_is_raised_from_send() -> None:
    router = Router()
    raised: list[Exception] = []

    @router.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        try:
            send(NotifyCustomer(event.order_id))
        except LookupError as exc:
            raised.append(exc)

    @router.handler
    def notify(command: NotifyCustomer) -> None:
        raise LookupError(f"no customer for {command.order_id}")

    bus = MessageBus(router)
    bus.handle(Allocated("o4"))
    assert [str(e) for e in raised] == ["no customer for o4"]
    assert bus.dead_letters.list() == []


def test_send_takes_commands_only() -> None:
    router = Router()
    raised: list[Exception] = []

    @router.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        try:
            send(CustomerNotified(event.order_id))  # type: ignore[arg-type]
        except TypeError as exc:
            raised.append(exc)

    MessageBus(router).handle(Allocated("o5"))
    assert "send() takes a Command" in str(raised[0])


def test_the_async_bus_provides_async_send() -> None:
    sent: list[Envelope[NotifyCustomer]] = []
    router = Router()

    @router.handler
    async def on_allocated(event: Allocated, send: AsyncSend) -> None:
        assert await send(NotifyCustomer(event.order_id)) == "notified"

    @router.handler
    async def notify(command: NotifyCustomer, envelope: Envelope[NotifyCustomer]) -> str:
        sent.append(envelope)
        return "notified"

    event = Envelope.new(Allocated("o6"))
    asyncio.run(AsyncMessageBus(router).handle(event))
    (command,) = sent
    assert (command.correlation_id, command.causation_id) == (
        event.correlation_id,
        event.message_id,
    )


def test_a_handler_asking_for_the_other_kind_of_send_fails_at_start_up() -> None:
    sync_handlers, async_handlers = Router(), Router()

    @sync_handlers.handler
    def on_allocated(event: Allocated, send: AsyncSend) -> None: ...

    @async_handlers.handler
    async def on_allocated_async(event: Allocated, send: Send) -> None: ...

    with pytest.raises(ConfigurationError, match="this bus provides Send: annotate it Send"):
        MessageBus(sync_handlers)
    with pytest.raises(ConfigurationError, match="this bus provides AsyncSend"):
        AsyncMessageBus(async_handlers)


def test_a_dependency_named_like_the_parameter_wins_over_send() -> None:
    router = Router()
    calls: list[object] = []

    @router.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        send(NotifyCustomer(event.order_id))

    MessageBus(router, dependencies={"send": calls.append}).handle(Allocated("o7"))
    assert calls == [NotifyCustomer("o7")]


def test_a_plain_function_cannot_take_async_send_as_it_could_not_await_it() -> None:
    router = Router()

    @router.handler
    def on_allocated(event: Allocated, send: AsyncSend) -> None:
        # A coroutine never awaited: the command never sent, as the bus refuses this handler.
        send(NotifyCustomer(event.order_id))  # type: ignore[unused-coroutine]

    with pytest.raises(ConfigurationError, match="on_allocated is a plain function: make it async"):
        AsyncMessageBus(router)


def test_a_durable_handler_given_a_send_continues_the_stored_events_conversation() -> None:
    sent: list[Envelope[NotifyCustomer]] = []
    commands = Router()

    @commands.handler
    def notify(command: NotifyCustomer, envelope: Envelope[NotifyCustomer]) -> None:
        sent.append(envelope)

    reactions = Router()

    @reactions.handler
    def on_allocated(event: Allocated, send: Send) -> None:
        send(NotifyCustomer(event.order_id))

    store = MemoryStore()
    event = Envelope.new(Allocated("o9"))
    appended = store.append("Order-o9", [Codec().new_event(event)])
    # Run from the log, outside any bus: the bus to send on is given like any dependency.
    projections = durable_handlers(reactions, dependencies={Send: Send(MessageBus(commands))})
    runner = ProjectionRunner(store, projections, poll_interval=0.05, retry_waits=False)
    with runner.running():
        runner.wait_for(projections[0].name, appended.positions[-1])
    (command,) = sent
    assert (command.correlation_id, command.causation_id) == (
        event.correlation_id,
        event.message_id,
    )
