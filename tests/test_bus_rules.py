"""The bus's rules for commands and events, as tests through the public API.

A command's error must reach the caller, never be silenced; an
event handler is retried (3 attempts), and when it still fails the failure is
logged and swallowed; events run only after the command succeeded. Then
the allocation service of Architecture Patterns with Python, its bootstrap
with injected fakes, and two of the book's tests, with only imports and
constructor details adapted.
"""

import logging
from typing import Any

import pytest

from examples.allocation import handlers
from examples.allocation.bootstrap import bootstrap
from examples.allocation.domain import Batch, InvalidSku, Product
from examples.allocation.messages import Allocate, Allocated, OutOfStock
from examples.allocation.unit_of_work import ProductsUnitOfWork
from examples.allocation.views import InMemoryAllocationsView
from tidings import Command, Envelope, MemoryStore, Message, MessageBus, Router
from tidings.testing import Call, Recorder


def lamp_shop(stock: int) -> ProductsUnitOfWork:
    uow = ProductsUnitOfWork(MemoryStore())
    uow.products.add(Product("LAMP", [Batch("b1", "LAMP", stock)]))
    return uow


def test_a_commands_error_reaches_the_caller_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    uow = lamp_shop(100)
    bus = bootstrap(uow=uow, send_mail=Recorder(), retry_waits=False)
    with caplog.at_level(logging.WARNING), pytest.raises(InvalidSku) as raised:
        bus.handle(Allocate("o1", "NOPE", 10))
    assert type(raised.value) is InvalidSku
    assert str(raised.value) == "Invalid sku NOPE"
    assert raised.value.__cause__ is None
    (logged,) = [r for r in caplog.records if r.name == "tidings.messages"]
    assert "Allocate" in logged.getMessage()
    assert "InvalidSku" in logged.getMessage()
    assert uow.store.read_all() == []


def test_a_failing_event_handler_is_tried_3_times_logged_not_raised_and_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send_mail = Recorder(fail_with=ConnectionError("smtp down"))
    bus = bootstrap(uow=lamp_shop(5), send_mail=send_mail, retry_waits=False)
    command = Envelope.new(Allocate("o1", "LAMP", 10))
    with caplog.at_level(logging.WARNING, logger="tidings.bus"):
        assert bus.handle(command) is None
    assert len(send_mail.calls) == 3
    logged = [r for r in caplog.records if r.name == "tidings.bus"]
    assert [r.levelno for r in logged] == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert "send_out_of_stock_notification" in logged[-1].getMessage()
    assert "after 3 attempts" in logged[-1].getMessage()
    assert logged[-1].exc_info is not None and logged[-1].exc_info[0] is ConnectionError
    (letter,) = bus.dead_letters.list()
    assert letter.handler.endswith("send_out_of_stock_notification")
    assert letter.envelope.message == OutOfStock("LAMP")
    assert (letter.attempts, letter.error) == (3, "ConnectionError: smtp down")
    assert letter.correlation_id == command.message_id


def test_a_failing_event_handler_does_not_stop_the_others() -> None:
    stock_reports: list[str] = []
    listener = Router()

    @listener.handler
    def report_shortage(event: OutOfStock) -> None:
        stock_reports.append(event.sku)

    uow = lamp_shop(5)
    bus = MessageBus(
        [handlers.router, listener],
        dependencies={
            "uow": uow,
            "send_mail": Recorder(fail_with=ConnectionError()),
            "views": InMemoryAllocationsView(uow.store),
        },
        retry_waits=False,
    )
    bus.handle(Allocate("o1", "LAMP", 10))
    assert stock_reports == ["LAMP"]
    assert len(bus.dead_letters.list()) == 1


def test_events_are_handled_after_the_command_returns_its_result() -> None:
    trail: list[str] = []
    listener = Router()

    @listener.handler
    def on_allocated(event: Allocated) -> None:
        trail.append(f"handled {type(event).__name__}")

    def note_results(envelope: Envelope[Message], call_next: Any) -> Any:
        result = call_next(envelope)
        if isinstance(envelope.message, Command):
            trail.append(f"{type(envelope.message).__name__} returned {result!r}")
        return result

    uow = lamp_shop(100)
    bus = MessageBus(
        [handlers.router, listener],
        dependencies={
            "uow": uow,
            "send_mail": Recorder(),
            "views": InMemoryAllocationsView(uow.store),
        },
        middleware=[note_results],
        retry_waits=False,
    )
    assert bus.handle(Allocate("o1", "LAMP", 10)) == "b1"
    assert trail == ["Allocate returned 'b1'", "handled Allocated"]
    with pytest.raises(InvalidSku):
        bus.handle(Allocate("o2", "NOPE", 10))
    assert trail == ["Allocate returned 'b1'", "handled Allocated"]


def test_the_out_of_stock_notification_goes_through_the_injected_send_mail() -> None:
    send_mail = Recorder()
    bus = bootstrap(uow=lamp_shop(5), send_mail=send_mail)
    bus.handle(Allocate("o1", "LAMP", 10))
    assert send_mail.calls == [
        Call(
            (),
            {
                "to": "stock@example.com",
                "subject": "Out of stock: LAMP",
                "body": "The SKU LAMP is out of stock.",
            },
        )
    ]


# Two tests as the book gives them.


def test__allocate__happy_path() -> None:
    """Test using bootstrap with fakes."""
    uow = ProductsUnitOfWork(MemoryStore())
    uow.products.add(Product("LAMP", [Batch("b1", "LAMP", 100)]))

    bus = bootstrap(uow=uow)

    bus.handle(Allocate("o1", "LAMP", 10))

    # The book's line: `get` answers None only for an sku never added.
    assert uow.products.get("LAMP").batches[0].available_quantity == 90  # type: ignore[union-attr]


def test__out_of_stock__sends_notification() -> None:
    """Test event handler is triggered."""
    uow = ProductsUnitOfWork(MemoryStore())
    uow.products.add(Product("LAMP", [Batch("b1", "LAMP", 5)]))

    notifications = []
    fake_send_mail = lambda **kwargs: notifications.append(kwargs)  # noqa: E731

    bus = bootstrap(uow=uow, send_mail=fake_send_mail)

    bus.handle(Allocate("o1", "LAMP", 10))  # More than available

    assert len(notifications) == 1
    assert "LAMP" in notifications[0]["subject"]
