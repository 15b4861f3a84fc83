"""The two-service example, run as `python -m examples.shipping` against the real NATS server.

Orders and shipping each keep their own SQLite file; once the run ends,
the files alone tell whether the events crossed as they should: shipping's
copy of the customers holds the address each customer moved to, each paid
order was shipped once to the address of that copy, the unpaid one not at
all, and orders recorded the shipments it heard of.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from examples.shipping import shipping
from examples.shipping.contracts import CODEC, Line, OrderShipped
from tests.transports.brokers import NATS_URL, nats_connect, unique_namespace
from tidings import AsyncInbox, AsyncSQLDeadLetters, AsyncSQLiteStore

pytestmark = pytest.mark.brokers

ROOT = Path(__file__).resolve().parents[2]


def test_orders_and_shipping_exchange_their_events_over_nats(tmp_path: Path) -> None:
    nats_connect()  # skip, or fail under CI, without the server
    command = [sys.executable, "-m", "examples.shipping", "--nats", NATS_URL]
    command += ["--dir", str(tmp_path), "--prefix", unique_namespace()]
    run = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    assert "shipment-order-2 for order-2 to 4 Harbour Road, Wick" in run.stdout

    async def end_state() -> None:
        store = AsyncSQLiteStore(str(tmp_path / "shipping.db"))
        copies = {c.customer_id: (c.name, c.address) for c in await shipping.customers(store)}
        assert copies == {
            "customer-ann": ("Ann", "1 Quay Street, Leith"),
            "customer-bob": ("Bob", "4 Harbour Road, Wick"),  # the later event won
        }
        dispatched = await shipping.shipments(store)
        assert {order: s.address for order, s in dispatched.items()} == {
            "order-1": "1 Quay Street, Leith",
            "order-2": "4 Harbour Road, Wick",  # where Bob lived when it was paid
        }
        assert dispatched["order-2"].lines == (Line("desk", 1), Line("chair", 2))
        assert len(await store.read_all(categories=["Shipment"])) == 2  # each once
        # Every message of orders' Customer and Order streams was received once, handled
        # or ignored: 2 registered, 1 moved, 3 placed, 2 paid, 2 shipped.
        assert await AsyncInbox(store, "shipping").count() == 10
        assert await AsyncSQLDeadLetters(store, codec=CODEC).count() == 0
        await store.aclose()

        store = AsyncSQLiteStore(str(tmp_path / "orders.db"))
        shipped = [CODEC.envelope(r).message for r in await store.read_all(categories=["Order"])]
        assert sorted(
            (e.order_id, e.shipment_id) for e in shipped if isinstance(e, OrderShipped)
        ) == [("order-1", "shipment-order-1"), ("order-2", "shipment-order-2")]
        assert await AsyncInbox(store, "orders").count() == 2
        assert await AsyncSQLDeadLetters(store, codec=CODEC).count() == 0
        await store.aclose()

    asyncio.run(end_state())
