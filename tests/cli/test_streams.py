"""`tidings streams`: streams in name order, by category, with version and deleted flag."""

from __future__ import annotations

import json
from decimal import Decimal

from tests.cli.conftest import Store, invoke
from tests.cli.sample import OrderConfirmed, OrderPlaced, PaymentRequested
from tidings.messages import Envelope


def _streams(store: Store) -> None:
    store.append(
        "Order-1",
        Envelope.new(OrderPlaced("1", Decimal(1))),
        Envelope.new(OrderConfirmed("1")),
    )
    store.append("Order-2", Envelope.new(OrderPlaced("2", Decimal(2))))
    store.append("Payment-1", Envelope.new(PaymentRequested("1")))
    store.append("Order-3", Envelope.new(OrderPlaced("3", Decimal(3))))
    opened = store.open()
    try:
        opened.delete_stream("Order-2")
    finally:
        opened.close()


def _listed(*args: str) -> list[tuple[str, int, bool]]:
    result = invoke("streams", "--json", *args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [(line["stream"], line["version"], line["deleted"]) for line in lines]


def test_streams_by_name_without_deleted_ones(store: Store) -> None:
    _streams(store)
    assert _listed("--store", store.url) == [
        ("Order-1", 2, False),
        ("Order-3", 1, False),
        ("Payment-1", 1, False),
    ]


def test_deleted_streams_on_request(store: Store) -> None:
    _streams(store)
    assert _listed("--deleted", "--store", store.url) == [
        ("Order-1", 2, False),
        ("Order-2", 1, True),
        ("Order-3", 1, False),
        ("Payment-1", 1, False),
    ]


def test_one_category_paged_by_name(store: Store) -> None:
    _streams(store)
    first = _listed("-c", "Order", "--deleted", "--limit", "2", "--store", store.url)
    rest = _listed("-c", "Order", "--deleted", "--after", first[-1][0], "--store", store.url)
    assert [name for name, _, _ in first + rest] == ["Order-1", "Order-2", "Order-3"]


def test_table_shows_versions_deleted_flag_and_next_page(store: Store) -> None:
    _streams(store)
    result = invoke("streams", "--deleted", "--limit", "3", "--store", store.url)
    assert result.exit_code == 0, result.output
    header, *rows, hint = result.stdout.strip().splitlines()
    assert header.split() == ["stream", "category", "version", "deleted"]
    assert [row.split() for row in rows] == [
        ["Order-1", "Order", "2"],
        ["Order-2", "Order", "1", "deleted"],
        ["Order-3", "Order", "1"],
    ]
    assert hint == "more: --after Order-3"


def test_no_streams(store: Store) -> None:
    result = invoke("streams", "--store", store.url)
    assert result.exit_code == 0
    assert result.stdout.strip() == "no streams"
