"""A scripted scenario driven over HTTP against a running service: `... demo --url URL`.

It creates batches, allocates order lines, runs a SKU out of stock, shrinks a
batch so that a line is allocated again elsewhere, then prints the events the
service recorded and the read model of each order, read after the position
of the last event recorded (`X-Log-Position`), as the read model is a
projection that follows the log. Unique references per run let it run again
against the same database.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tidings.integrations.fastapi import POSITION_HEADER


def run_demo(url: str) -> None:
    """Drive the service at `url` through the scenario and print what it recorded."""
    run = uuid.uuid4().hex[:6]
    table, vase = f"SMALL-TABLE-{run}", f"BLUE-VASE-{run}"
    with httpx.Client(base_url=url, timeout=30.0) as client:
        start = _last_position(client)
        recorded = start

        def call(path: str, body: dict[str, Any]) -> Any:
            nonlocal recorded
            response = client.post(path, json=body)
            print(f"POST {path} {body}\n  -> {response.status_code} {response.text}")
            recorded = max(recorded, int(response.headers.get(POSITION_HEADER, 0)))
            return response.json()

        print(f"Stock of {table}: 20 in the warehouse, 50 due in May, 50 due in March.")
        call("/add_batch", {"ref": f"warehouse-{run}", "sku": table, "qty": 20, "eta": None})
        call("/add_batch", {"ref": f"may-{run}", "sku": table, "qty": 50, "eta": "2031-05-01"})
        call("/add_batch", {"ref": f"march-{run}", "sku": table, "qty": 50, "eta": "2031-03-01"})

        print("\nWarehouse stock goes first, then the earliest shipment.")
        orders = [f"order-{run}-{n}" for n in (1, 2, 3)]
        for orderid, qty in zip(orders, (8, 10, 5), strict=True):
            call("/allocate", {"orderid": orderid, "sku": table, "qty": qty})

        print("\nOut of stock: the allocation is accepted with no batch; the stock desk is told.")
        call("/add_batch", {"ref": f"vase-{run}", "sku": vase, "qty": 2, "eta": None})
        out_of_stock = f"order-{run}-4"
        call("/allocate", {"orderid": out_of_stock, "sku": vase, "qty": 3})

        print("\nAn unknown SKU is refused.")
        call("/allocate", {"orderid": f"order-{run}-5", "sku": f"NO-SUCH-{run}", "qty": 1})

        print(f"\nThe warehouse batch shrinks to 9: {orders[1]} gives way and is allocated again.")
        call("/change_batch_quantity", {"ref": f"warehouse-{run}", "qty": 9})

        print("\nThe events recorded (position, stream v version: event; cause):")
        ids: dict[str, str] = {}
        for event in client.get("/events", params={"after": start, "limit": 1000}).json():
            ids[event["event_id"]] = f"{event['type']} at {event['position']}"
            cause = ids.get(event["causation_id"], "the request")
            print(f"  {event['position']}. {event['stream']} v{event['version']}: {event['type']}")
            print(f"       {event['data']}; caused by {cause}")

        print(f"\nThe read model (GET /allocations/<orderid>?after={recorded}):")
        for orderid in [*orders, out_of_stock]:
            response = client.get(f"/allocations/{orderid}", params={"after": recorded})
            print(f"  {orderid}: {response.status_code} {response.json()}")


def _last_position(client: httpx.Client) -> int:
    """The position of the last event already stored, so only this run's are printed."""
    position = 0
    while page := client.get("/events", params={"after": position, "limit": 1000}).json():
        position = page[-1]["position"]
    return position
