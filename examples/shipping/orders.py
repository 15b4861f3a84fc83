"""The orders service: customers and their orders, and the query shipping asks it.

It publishes its log (`Customer` and `Order` events) and receives
shipping's `ShipmentDispatched`, marking the order shipped. It answers
`GetOrder` over NATS request/reply on `query.<namespace>.order`, for a
service notified by `OrderPaid` that needs to know what was paid.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from examples.shipping.contracts import (
    CustomerMoved,
    CustomerRegistered,
    Line,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    ShipmentDispatched,
)
from examples.shipping.service import Node
from tidings import (
    AggregateNotFound,
    AsyncMessageBus,
    AsyncUnitOfWork,
    Command,
    DomainError,
    EventSourced,
    PerCall,
    Query,
    Router,
    applies,
)

router = Router()


class Customer(EventSourced):
    name: str
    address: str

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = self.address = ""

    @classmethod
    def register(cls, customer_id: str, name: str, address: str) -> Customer:
        customer = cls(customer_id)
        customer.record(CustomerRegistered(customer_id, name, address))
        return customer

    def move(self, address: str) -> None:
        if address != self.address:
            self.record(CustomerMoved(self.id, address))

    @applies
    def _registered(self, event: CustomerRegistered) -> None:
        self.name, self.address = event.name, event.address

    @applies
    def _moved(self, event: CustomerMoved) -> None:
        self.address = event.address


class Order(EventSourced):
    customer_id: str
    lines: tuple[Line, ...]
    status: str
    shipment_id: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.customer_id, self.lines, self.status, self.shipment_id = "", (), "", None

    @classmethod
    def place(cls, order_id: str, customer_id: str, lines: tuple[Line, ...]) -> Order:
        order = cls(order_id)
        order.record(OrderPlaced(order_id, customer_id, lines))
        return order

    def pay(self) -> None:
        if self.status != "placed":
            raise DomainError(f"order {self.id} is {self.status}, it cannot be paid")
        self.record(OrderPaid(self.id))

    def shipped(self, shipment_id: str) -> None:
        if self.status == "paid":  # a repeat of the news changes nothing
            self.record(OrderShipped(self.id, shipment_id))

    @applies
    def _placed(self, event: OrderPlaced) -> None:
        self.customer_id, self.lines, self.status = event.customer_id, event.lines, "placed"

    @applies
    def _paid(self, event: OrderPaid) -> None:
        self.status = "paid"

    @applies
    def _shipped(self, event: OrderShipped) -> None:
        self.status, self.shipment_id = "shipped", event.shipment_id


@dataclass(frozen=True)
class RegisterCustomer(Command):
    customer_id: str
    name: str
    address: str


@dataclass(frozen=True)
class MoveCustomer(Command):
    customer_id: str
    address: str


@dataclass(frozen=True)
class PlaceOrder(Command):
    order_id: str
    customer_id: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class PayOrder(Command):
    order_id: str


@dataclass(frozen=True)
class GetOrder(Query):
    order_id: str


@dataclass(frozen=True)
class OrderDetails:
    """What orders tells about an order."""

    order_id: str
    customer_id: str
    lines: tuple[Line, ...]
    status: str
    shipment_id: str | None


@router.handler
async def register_customer(command: RegisterCustomer, uow: AsyncUnitOfWork) -> None:
    async with uow:
        await uow.repository(Customer).add(
            Customer.register(command.customer_id, command.name, command.address)
        )
        await uow.commit()


@router.handler
async def move_customer(command: MoveCustomer, uow: AsyncUnitOfWork) -> None:
    async with uow:
        customer = await uow.repository(Customer).get(command.customer_id)
        if customer is None:
            raise AggregateNotFound("Customer", command.customer_id)
        customer.move(command.address)
        await uow.commit()


@router.handler
async def place_order(command: PlaceOrder, uow: AsyncUnitOfWork) -> None:
    async with uow:
        order = Order.place(command.order_id, command.customer_id, command.lines)
        await uow.repository(Order).add(order)
        await uow.commit()


@router.handler
async def pay_order(command: PayOrder, uow: AsyncUnitOfWork) -> None:
    async with uow:
        order = await uow.repository(Order).get(command.order_id)
        if order is None:
            raise AggregateNotFound("Order", command.order_id)
        order.pay()
        await uow.commit()


@router.handler
async def get_order(query: GetOrder, uow: AsyncUnitOfWork) -> OrderDetails | None:
    async with uow:
        order = await uow.repository(Order).get(query.order_id)
    if order is None:
        return None
    return OrderDetails(order.id, order.customer_id, order.lines, order.status, order.shipment_id)


@router.handler
async def shipment_dispatched(event: ShipmentDispatched, uow: AsyncUnitOfWork) -> None:
    """Shipping's news, received once through the inbox: the order is shipped."""
    async with uow:
        order = await uow.repository(Order).get(event.order_id)
        if order is None:
            raise AggregateNotFound("Order", event.order_id)
        order.shipped(event.shipment_id)
        await uow.commit()


def build_bus(node: Node) -> AsyncMessageBus:
    return AsyncMessageBus(
        router,
        dependencies={"uow": PerCall(node.unit_of_work)},
        dead_letters=node.dead_letters,
    )


RECEIVES = ["Shipment"]
"""The categories of shipping's stream that orders receives."""


def query_subject(namespace: str) -> str:
    """Where orders answers `GetOrder`: outside its stream's subjects, so never stored."""
    return f"query.{namespace}.order"


_request = msgspec.json.Decoder(dict[str, str])
_details = msgspec.json.Decoder(OrderDetails | None)


async def answer_queries(node: Node) -> Subscription:
    """Answer `{"order_id": ...}` requests on the orders query subject with `OrderDetails` JSON."""
    bus = node.bus
    assert bus is not None, "start the node first"

    async def answer(msg: Msg) -> None:
        try:
            order_id = _request.decode(msg.data)["order_id"]
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as exc:
            await msg.respond(msgspec.json.encode({"error": f"not a GetOrder request: {exc}"}))
            return
        details = await bus.handle(GetOrder(order_id))
        await msg.respond(msgspec.json.encode(details))

    return await node.own.client.subscribe(query_subject(node.own.namespace), cb=answer)


def decode_details(data: bytes) -> OrderDetails | None:
    details: OrderDetails | None = _details.decode(data)
    return details
