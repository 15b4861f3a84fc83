"""`tidings events`: pages of `$all` or of one stream, filtered, as a table or JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.cli.conftest import Store, invoke, run_tidings
from tests.cli.sample import OrderConfirmed, OrderPlaced, PaymentRequested
from tidings.messages import Envelope, new_id
from tidings.store import NewEvent


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def _orders(store: Store) -> None:
    store.append("Order-1", Envelope.new(OrderPlaced("1", Decimal("9.50"))))
    store.append("Payment-1", Envelope.new(PaymentRequested("1")))
    store.append("Order-2", Envelope.new(OrderPlaced("2", Decimal("20.00"))))
    store.append("Order-1", Envelope.new(OrderConfirmed("1")))


def test_json_lines_show_all_events_in_order_with_their_envelope(store: Store) -> None:
    placed = Envelope.new(OrderPlaced("1", Decimal("9.50")), headers={"user": "ada"})
    caused = placed.caused(PaymentRequested("1"))
    store.append("Order-1", placed)
    store.append("Payment-1", caused)

    result = invoke("events", "--json", "--store", store.url)

    assert result.exit_code == 0, result.output
    first, second = _lines(result.stdout)
    assert first["position"] < second["position"]
    assert first | {"position": 0} == {
        "position": 0,
        "stream": "Order-1",
        "version": 1,
        "type": "cli.OrderPlaced",
        "schema_version": 1,
        "event_id": str(placed.message_id),
        "correlation_id": str(placed.correlation_id),
        "causation_id": None,
        "occurred_at": first["occurred_at"],
        "headers": {"user": "ada"},
        "data": {"order_id": "1", "total": "9.50"},
    }
    assert datetime.fromisoformat(first["occurred_at"]) == placed.occurred_at
    assert second["causation_id"] == str(placed.message_id)
    assert second["correlation_id"] == str(placed.correlation_id)


def test_pages_follow_on_from_the_last_position(store: Store) -> None:
    _orders(store)
    everything = _lines(invoke("events", "--json", "--store", store.url).stdout)

    first = invoke("events", "--json", "--limit", "3", "--store", store.url)
    after = str(_lines(first.stdout)[-1]["position"])
    rest = invoke("events", "--json", "--limit", "3", "--after", after, "--store", store.url)

    assert _lines(first.stdout) + _lines(rest.stdout) == everything
    assert len(_lines(rest.stdout)) == 1


def test_table_names_the_next_page_when_the_page_is_full(store: Store) -> None:
    _orders(store)
    positions = [
        line["position"] for line in _lines(invoke("events", "--json", "--store", store.url).stdout)
    ]

    full = invoke("events", "--limit", "2", "--store", store.url)
    last = invoke("events", "--after", str(positions[1]), "--store", store.url)

    assert full.exit_code == 0, full.output
    header, *rows, hint = full.stdout.strip().splitlines()
    assert header.split() == [
        "position",
        "stream",
        "version",
        "type",
        "time",
        "correlation",
        "data",
    ]
    assert [row.split()[:4] for row in rows] == [
        [str(positions[0]), "Order-1", "1", "cli.OrderPlaced"],
        [str(positions[1]), "Payment-1", "1", "cli.PaymentRequested"],
    ]
    assert '{"order_id":"1","total":"9.50"}' in rows[0]
    assert hint == f"more: --after {positions[1]}"
    assert "more:" not in last.stdout
    assert len(last.stdout.strip().splitlines()) == 3


def test_category_and_type_filters(store: Store) -> None:
    _orders(store)

    orders = _lines(invoke("events", "--json", "-c", "Order", "--store", store.url).stdout)
    placed = _lines(
        invoke("events", "--json", "--type", "cli.OrderPlaced", "--store", store.url).stdout
    )
    both = _lines(
        invoke(
            "events",
            "--json",
            "-c",
            "Payment",
            "-c",
            "Order",
            "-t",
            "cli.OrderConfirmed",
            "-t",
            "cli.PaymentRequested",
            "--store",
            store.url,
        ).stdout
    )

    assert [(e["stream"], e["type"]) for e in orders] == [
        ("Order-1", "cli.OrderPlaced"),
        ("Order-2", "cli.OrderPlaced"),
        ("Order-1", "cli.OrderConfirmed"),
    ]
    assert [e["stream"] for e in placed] == ["Order-1", "Order-2"]
    assert [e["type"] for e in both] == ["cli.PaymentRequested", "cli.OrderConfirmed"]


def test_one_stream_paged_by_version_and_filtered_by_type(store: Store) -> None:
    for n in range(5):
        event = OrderPlaced("1", Decimal(n)) if n % 2 == 0 else OrderConfirmed("1")
        store.append("Order-1", Envelope.new(event))
    store.append("Order-2", Envelope.new(OrderConfirmed("2")))

    page = _lines(
        invoke("events", "--json", "-s", "Order-1", "--limit", "2", "--store", store.url).stdout
    )
    next_page = _lines(
        invoke("events", "--json", "-s", "Order-1", "--after", "2", "--store", store.url).stdout
    )
    confirmed = _lines(
        invoke(
            "events",
            "--json",
            "-s",
            "Order-1",
            "-t",
            "cli.OrderConfirmed",
            "--limit",
            "1",
            "--after",
            "2",
            "--store",
            store.url,
        ).stdout
    )
    table = invoke("events", "-s", "Order-1", "--limit", "2", "--store", store.url)

    assert [e["version"] for e in page] == [1, 2]
    assert [e["version"] for e in next_page] == [3, 4, 5]
    assert [(e["version"], e["type"]) for e in confirmed] == [(4, "cli.OrderConfirmed")]
    assert table.stdout.strip().splitlines()[-1] == "more: --after 2"


def test_payload_of_an_unknown_type_shows_as_stored(store: Store) -> None:
    event_id = new_id()
    stored = NewEvent(
        event_id,
        "cli.NobodyKnows",
        3,
        b'{"b": [1, 2], "a": null}',
        event_id,
        None,
        datetime.now(UTC),
    )
    store.append_raw("Mystery-1", stored)

    (line,) = _lines(invoke("events", "--json", "--store", store.url).stdout)

    assert line["type"] == "cli.NobodyKnows"
    assert line["schema_version"] == 3
    assert line["data"] == {"b": [1, 2], "a": None}


def test_import_loads_event_classes_that_decode_payloads(store: Store) -> None:
    event_id = new_id()
    stored = NewEvent(
        event_id, "cli.GiftWrapped", 1, b'{"order_id": "7"}', event_id, None, datetime.now(UTC)
    )
    store.append_raw("Gift-7", stored)

    # Fresh processes: this one may have loaded the class already.
    raw = _lines(run_tidings("events", "--json", "--store", store.url).stdout)
    decoded = _lines(
        run_tidings(
            "events", "--json", "--import", "tests.cli.late_events", "--store", store.url
        ).stdout
    )

    assert raw[0]["data"] == {"order_id": "7"}
    assert decoded[0]["data"] == {"order_id": "7", "paper": "plain"}


def test_an_empty_store_says_so(store: Store) -> None:
    result = invoke("events", "--store", store.url)
    assert result.exit_code == 0
    assert result.stdout.strip() == "no events"
    assert invoke("events", "--json", "--store", store.url).stdout == ""


def test_a_narrow_terminal_drops_the_correlation_then_the_time_but_keeps_positions(
    store: Store,
) -> None:
    _orders(store)

    wide = invoke("events", "--store", store.url, env={"COLUMNS": "250"}).stdout
    medium = invoke("events", "--store", store.url, env={"COLUMNS": "120"}).stdout
    narrow = invoke("events", "--store", store.url, env={"COLUMNS": "80"}).stdout

    assert wide.split()[:7] == [
        "position",
        "stream",
        "version",
        "type",
        "time",
        "correlation",
        "data",
    ]
    assert medium.split()[:6] == ["position", "stream", "version", "type", "time", "data"]
    assert narrow.split()[:5] == ["position", "stream", "version", "type", "data"]
    positions = [
        str(e["position"]) for e in _lines(invoke("events", "--json", "--store", store.url).stdout)
    ]
    assert [line.split()[0] for line in narrow.splitlines()[1:5]] == positions
