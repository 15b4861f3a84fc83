"""`tidings trace`: the events of one request, nested under the messages that caused them."""

from __future__ import annotations

from decimal import Decimal

from tests.cli.conftest import Store, invoke
from tests.cli.sample import (
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentRequested,
    PlaceOrder,
    ShipOrder,
)
from tidings.messages import Envelope

_GUIDES = set("│├└─ ")


def _depths(output: str) -> list[tuple[int, str]]:
    """Each line of a tree as (indentation, text without the guides)."""
    found = []
    for line in output.splitlines():
        depth = next(i for i, char in enumerate(line) if char not in _GUIDES)
        found.append((depth, line[depth:]))
    return found


def test_events_nest_under_their_causes_and_commands_appear_by_id(store: Store) -> None:
    place = Envelope.new(PlaceOrder("1"))
    placed = place.caused(OrderPlaced("1", Decimal("5")))
    confirmed = place.caused(OrderConfirmed("1"))
    payment = placed.caused(PaymentRequested("1"))
    ship = placed.caused(ShipOrder("1"))  # a command raised by a handler: not stored
    shipped = ship.caused(OrderShipped("1"))
    other = Envelope.new(OrderPlaced("2", Decimal("7")))
    store.append("Order-1", placed, confirmed)
    store.append("Order-2", other)
    store.append("Payment-1", payment)
    store.append("Shipment-1", shipped)

    result = invoke("trace", str(place.correlation_id), "--store", store.url)

    assert result.exit_code == 0, result.output
    lines = _depths(result.stdout)
    assert [text.split()[0] for _, text in lines] == [
        "correlation",
        str(place.message_id),
        "cli.OrderPlaced",
        "cli.PaymentRequested",
        "cli.OrderConfirmed",
        str(ship.message_id),
        "cli.OrderShipped",
    ]
    root, request, order_placed, payment_line, order_confirmed, command, order_shipped = lines
    assert root[1] == f"correlation {place.correlation_id}"
    assert "the request, not stored" in request[1]
    assert "a message, not stored" in command[1]
    assert root[0] < request[0] == command[0]
    assert request[0] < order_placed[0] == order_confirmed[0] < payment_line[0]
    assert command[0] < order_shipped[0]
    assert "Order-1@1" in order_placed[1]
    assert str(placed.message_id) in order_placed[1]
    assert '{"order_id":"1","total":"5"}' in order_placed[1]
    assert "Shipment-1@1" in order_shipped[1]
    assert str(other.message_id) not in result.stdout


def test_a_request_that_began_with_a_stored_event_is_its_root(store: Store) -> None:
    placed = Envelope.new(OrderPlaced("1", Decimal("5")))
    payment = placed.caused(PaymentRequested("1"))
    store.append("Order-1", placed)
    store.append("Payment-1", payment)

    result = invoke("trace", str(placed.correlation_id), "--store", store.url)

    assert result.exit_code == 0, result.output
    (_, root), (placed_depth, placed_line), (payment_depth, payment_line) = _depths(result.stdout)
    assert root == f"correlation {placed.correlation_id}"
    assert placed_line.startswith("cli.OrderPlaced")
    assert payment_line.startswith("cli.PaymentRequested")
    assert placed_depth < payment_depth


def test_an_unknown_correlation_id_is_reported(store: Store) -> None:
    store.append("Order-1", Envelope.new(OrderPlaced("1", Decimal("5"))))
    missing = Envelope.new(PlaceOrder("9")).correlation_id

    result = invoke("trace", str(missing), "--store", store.url)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"tidings: error: no stored event has correlation id {missing}"


def test_a_request_is_found_among_many_events(store: Store) -> None:
    place = Envelope.new(PlaceOrder("1"))
    placed = place.caused(OrderPlaced("1", Decimal("5")))
    confirmed = place.caused(OrderConfirmed("1"))
    store.append("Order-0", *[Envelope.new(OrderConfirmed(str(n))) for n in range(1500)])
    store.append("Order-1", placed)
    store.append("Order-2", *[Envelope.new(OrderConfirmed(str(n))) for n in range(1500)])
    store.append("Order-1", confirmed)
    store.append("Order-3", *[Envelope.new(OrderConfirmed(str(n))) for n in range(500)])

    result = invoke("trace", str(place.correlation_id), "--store", store.url)

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert [text.split()[:2] for _, text in _depths(result.stdout)] == [
        ["correlation", str(place.correlation_id)],
        [str(place.message_id), "(the"],
        ["cli.OrderPlaced", "Order-1@1"],
        ["cli.OrderConfirmed", "Order-1@2"],
    ]
