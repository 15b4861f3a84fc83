"""A short scripted run of the orders service: `python -m examples.orders`.

Orders go through their life (and one refuses a transition its status
forbids), the read model answers queries, a user changes e-mail and is
deactivated (repeats are no-ops), and the event log is printed.
"""

from __future__ import annotations

import logging
import sys
from decimal import Decimal
from typing import Any

from examples.orders.bootstrap import bootstrap
from examples.orders.domain import InvalidTransition
from examples.orders.messages import (
    CancelOrder,
    ChangeUserEmail,
    ConfirmOrder,
    CreateUser,
    DeactivateUser,
    DeliverOrder,
    GetCustomerOrders,
    GetOrder,
    GetPendingOrders,
    OrderItem,
    PayOrder,
    PlaceOrder,
    ShipOrder,
)
from examples.orders.views import OrderSummary
from tidings import EventStore, MemoryStore, Message, MessageBus


def run_scenario(bus: MessageBus, store: EventStore) -> None:
    """Send the scenario's messages to `bus`, then print what `store` recorded."""

    def send(message: Message) -> Any:
        print(f"> {message}")
        result = bus.handle(message)
        rows = result if isinstance(result, list) else [result]
        for row in rows:
            if isinstance(row, OrderSummary):
                print(f"  - {show(row)}")
            elif row is not None:
                print(f"  = {row}")
        return result

    lamp = OrderItem("lamp", 2, Decimal("19.90"))
    desk = OrderItem("desk", 1, Decimal("249.00"))

    print("An order goes from placed to delivered.")
    send(PlaceOrder("order-1", "customer-1", (lamp, desk)))
    send(ConfirmOrder("order-1"))
    send(PayOrder("order-1", "payment-1", "card"))
    send(ShipOrder("order-1", "TN-1001", "DHL"))
    send(DeliverOrder("order-1"))

    print("\nAnother is cancelled; a cancelled order cannot be shipped.")
    send(PlaceOrder("order-2", "customer-1", (lamp,)))
    send(CancelOrder("order-2", "changed my mind"))
    try:
        send(ShipOrder("order-2", "TN-1002", "DHL"))
    except InvalidTransition as error:
        print(f"  ! {type(error).__name__}: {error}")
    send(PlaceOrder("order-3", "customer-2", (desk,)))

    print("\nQueries read the order list, which the events keep up to date.")
    send(GetOrder("order-1"))
    send(GetCustomerOrders("customer-1"))
    send(GetPendingOrders())

    print("\nA user changes e-mail twice to the same address and is deactivated twice.")
    send(CreateUser("user-1", "Ada", "ada@example.com"))
    for _ in range(2):
        send(ChangeUserEmail("user-1", "ada@example.org"))
    for _ in range(2):
        send(DeactivateUser("user-1"))

    print("\nThe event log (the repeated changes recorded nothing):")
    for record in store.read_all():
        print(f"  {record.position}. {record.stream} v{record.version}: {record.type}")


def show(summary: OrderSummary) -> str:
    tracking = f", tracking {summary.tracking_number}" if summary.tracking_number else ""
    return (
        f"{summary.order_id} of {summary.customer_id}: {summary.items_count} items, "
        f"{summary.total} {summary.currency}, {summary.status.value}{tracking}"
    )


def main() -> None:
    # The bus logs failed messages with their ids; show them in line with the scenario.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="  log: %(name)s: %(message)s"
    )
    store = MemoryStore()
    run_scenario(bootstrap(store=store), store)


if __name__ == "__main__":
    main()
