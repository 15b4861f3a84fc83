"""Orders and shipping over NATS JetStream, in one run: `python -m examples.shipping`.

Options: `--nats URL` (default `$TIDINGS_NATS_URL` or nats://127.0.0.1:4222),
`--dir DIR` for the two SQLite files (default: a temporary directory),
`--prefix P` for the namespaces (`<P>-orders`, `<P>-shipping`), and
`--keep` to leave the streams on the server (they are deleted otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from examples.shipping import orders, shipping
from examples.shipping.contracts import Line, ShipmentDispatched
from examples.shipping.service import Node
from tidings import Command

ANN, BOB = "customer-ann", "customer-bob"


@dataclass(frozen=True)
class Outcome:
    """What each service holds once the paid orders are shipped."""

    orders: list[orders.OrderDetails]
    customers: list[shipping.CustomerCopy]
    shipments: dict[str, ShipmentDispatched]


async def run_demo(
    nats_url: str, directory: Path, prefix: str = "demo", *, keep: bool = False, within: float = 30
) -> Outcome:
    """Run both services through the scenario; what they hold when both paid orders are shipped."""
    own, peer = f"{prefix}-orders", f"{prefix}-shipping"
    orders_node = await Node.open("orders", directory, nats_url, own, peer)
    shipping_node = await Node.open("shipping", directory, nats_url, peer, own)
    await orders_node.start(orders.build_bus, orders.RECEIVES)
    answering = await orders.answer_queries(orders_node)
    await shipping_node.start(shipping.build_bus, shipping.RECEIVES)
    bus = orders_node.bus
    assert bus is not None
    try:
        script: list[Command] = [
            orders.RegisterCustomer(ANN, "Ann", "1 Quay Street, Leith"),
            orders.RegisterCustomer(BOB, "Bob", "9 Mill Lane, Ely"),
            orders.PlaceOrder("order-1", ANN, (Line("lamp", 2),)),
            orders.PlaceOrder("order-2", BOB, (Line("desk", 1), Line("chair", 2))),
            orders.PlaceOrder("order-3", ANN, (Line("rug", 1),)),  # never paid: never shipped
            orders.MoveCustomer(BOB, "4 Harbour Road, Wick"),  # before order-2 is paid
            orders.PayOrder("order-1"),
            orders.PayOrder("order-2"),
        ]
        for command in script:
            print(f"orders > {command}")
            await bus.handle(command)
        async with asyncio.timeout(within):
            while True:
                found = [await bus.handle(orders.GetOrder(f"order-{n}")) for n in (1, 2, 3)]
                if all(d is not None and d.status == "shipped" for d in found[:2]):
                    break
                await asyncio.sleep(0.1)
            await settled(orders_node, shipping_node, shipping.RECEIVES)
            await settled(shipping_node, orders_node, orders.RECEIVES)
        return Outcome(
            [d for d in found if d is not None],
            await shipping.customers(shipping_node.store),
            await shipping.shipments(shipping_node.store),
        )
    finally:
        await answering.unsubscribe()
        await shipping_node.stop(delete=not keep)
        await orders_node.stop(delete=not keep)


async def settled(sender: Node, receiver: Node, categories: list[str]) -> None:
    """Wait until `receiver` has handled every event of `categories` that `sender` committed."""
    while True:
        sent = len(await sender.store.read_all(categories=categories))
        if await receiver.inbox.count() >= sent:
            return
        await asyncio.sleep(0.1)


def show(outcome: Outcome) -> None:
    print("\norders knows:")
    for order in outcome.orders:
        print(f"  {order.order_id}: {order.status}, shipment {order.shipment_id}")
    print("shipping's copy of the customers (from their events alone):")
    for customer in outcome.customers:
        copy = f"{customer.name}, {customer.address} (v{customer.version})"
        print(f"  {customer.customer_id}: {copy}")
    print("shipping dispatched:")
    for order_id, shipment in sorted(outcome.shipments.items()):
        lines = ", ".join(f"{line.quantity} x {line.sku}" for line in shipment.lines)
        print(f"  {shipment.shipment_id} for {order_id} to {shipment.address}: {lines}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.shipping", description=__doc__)
    parser.add_argument(
        "--nats", default=os.environ.get("TIDINGS_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument("--dir", type=Path, help="where the services' SQLite files go")
    parser.add_argument("--prefix", default="demo", help="the namespaces' prefix")
    parser.add_argument("--keep", action="store_true", help="keep the streams on the server")
    args = parser.parse_args(argv)
    try:
        if args.dir is not None:
            args.dir.mkdir(parents=True, exist_ok=True)
            outcome = asyncio.run(run_demo(args.nats, args.dir, args.prefix, keep=args.keep))
        else:
            with tempfile.TemporaryDirectory() as directory:
                outcome = asyncio.run(
                    run_demo(args.nats, Path(directory), args.prefix, keep=args.keep)
                )
    except (OSError, TimeoutError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    show(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
