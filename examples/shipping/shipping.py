"""The shipping service: a local copy of the customers, and a shipment per paid order.

- `CustomerRegistered` / `CustomerMoved` (event-carried state transfer):
  each is written into the `customers` table of shipping's own store, so
  shipping knows every address without asking orders. A copy is changed
  only by a newer version of the customer's stream: a redelivered, older
  event leaves it as it is.
- `OrderPaid` (event notification): the event tells only which order;
  shipping asks orders for its customer and lines, takes the address from
  its copy, and dispatches a `Shipment`, which publishes
  `ShipmentDispatched`. `OrderPlaced` has no handler here: ignored.

Every handler commits through the node's inbox unit of work, so its
effects are kept once per message, however often it is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from examples.shipping import orders
from examples.shipping.contracts import (
    CODEC,
    CustomerMoved,
    CustomerRegistered,
    Line,
    OrderPaid,
    ShipmentDispatched,
)
from examples.shipping.service import Node
from tidings import (
    AsyncEventStore,
    AsyncMessageBus,
    AsyncUnitOfWork,
    Envelope,
    EventSourced,
    PerCall,
    Retry,
    Router,
    applies,
)
from tidings.transports.nats import NatsBinding

router = Router()

_CREATE = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    version INTEGER NOT NULL
)"""


class UnknownCustomer(LookupError):
    """An order of a customer shipping has no copy of (yet)."""


class Shipment(EventSourced):
    """The shipment of one order: its id is the order's, so an order ships once."""

    dispatched: bool

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.dispatched = False

    @classmethod
    def dispatch(cls, order_id: str, address: str, lines: tuple[Line, ...]) -> Shipment:
        shipment = cls(order_id)
        shipment.record(ShipmentDispatched(f"shipment-{order_id}", order_id, address, lines))
        return shipment

    @applies
    def _dispatched(self, event: ShipmentDispatched) -> None:
        self.dispatched = True


class OrdersClient:
    """Asks the orders service about an order, over NATS request/reply."""

    def __init__(self, binding: NatsBinding, timeout: float = 2.0) -> None:
        self.binding = binding
        self.timeout = timeout

    async def order(self, order_id: str) -> orders.OrderDetails | None:
        reply = await self.binding.client.request(
            orders.query_subject(self.binding.namespace),
            msgspec.json.encode({"order_id": order_id}),
            timeout=self.timeout,
        )
        return orders.decode_details(reply.data)


@router.handler
async def customer_registered(
    event: CustomerRegistered, envelope: Envelope[CustomerRegistered], uow: AsyncUnitOfWork
) -> None:
    await _keep(uow, envelope, event.customer_id, name=event.name, address=event.address)


@router.handler
async def customer_moved(
    event: CustomerMoved, envelope: Envelope[CustomerMoved], uow: AsyncUnitOfWork
) -> None:
    await _keep(uow, envelope, event.customer_id, address=event.address)


async def _keep(
    uow: AsyncUnitOfWork,
    envelope: Envelope[CustomerRegistered] | Envelope[CustomerMoved],
    customer_id: str,
    *,
    address: str,
    name: str | None = None,
) -> None:
    """Write what the event says of the customer into the copy, if it is newer than the copy."""
    version = envelope.version or 0
    async with uow:
        tx = uow.transaction
        await tx.execute(_CREATE)
        if name is not None:
            await tx.execute(
                "INSERT INTO customers (customer_id, name, address, version) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name,"
                " address = excluded.address, version = excluded.version"
                " WHERE excluded.version > customers.version",
                [customer_id, name, address, version],
            )
        else:
            await tx.execute(
                "UPDATE customers SET address = ?, version = ?"
                " WHERE customer_id = ? AND version < ?",
                [address, version, customer_id, version],
            )
        await uow.commit()


@router.handler(retry=Retry(attempts=5, first_delay=0.2))
async def order_paid(event: OrderPaid, uow: AsyncUnitOfWork, orders_client: OrdersClient) -> None:
    """Notified: ask orders what was paid, ship it to the address of shipping's own copy."""
    details = await orders_client.order(event.order_id)
    if details is None:
        raise LookupError(f"orders does not know order {event.order_id}")
    async with uow:
        repository = uow.repository(Shipment)
        if await repository.get(event.order_id) is not None:
            return  # shipped already
        tx = uow.transaction
        await tx.execute(_CREATE)
        rows = await tx.query(
            "SELECT address FROM customers WHERE customer_id = ?", [details.customer_id]
        )
        if not rows:
            raise UnknownCustomer(f"no copy of customer {details.customer_id} here")
        await repository.add(Shipment.dispatch(event.order_id, str(rows[0][0]), details.lines))
        await uow.commit()


def build_bus(node: Node) -> AsyncMessageBus:
    return AsyncMessageBus(
        router,
        dependencies={
            "uow": PerCall(node.unit_of_work),
            "orders_client": OrdersClient(node.peer),
        },
        dead_letters=node.dead_letters,
    )


RECEIVES = ["Customer", "Order"]
"""The categories of orders' stream that shipping receives."""


@dataclass(frozen=True)
class CustomerCopy:
    customer_id: str
    name: str
    address: str
    version: int


async def customers(store: AsyncEventStore) -> list[CustomerCopy]:
    """Shipping's copy of the customers, by id."""
    async with store.transaction() as tx:
        await tx.execute(_CREATE)
        rows = await tx.query(
            "SELECT customer_id, name, address, version FROM customers ORDER BY customer_id"
        )
    return [CustomerCopy(str(r[0]), str(r[1]), str(r[2]), int(str(r[3]))) for r in rows]


async def shipments(store: AsyncEventStore) -> dict[str, ShipmentDispatched]:
    """Every shipment dispatched, by order id, as shipping's log has it."""
    records = await store.read_all(categories=["Shipment"])
    events = [CODEC.envelope(record).message for record in records]
    return {event.order_id: event for event in events if isinstance(event, ShipmentDispatched)}
