"""The service layer: command handlers change aggregates, event handlers feed the read model.

Handlers name what they need as parameters (`uow`, `clock`, `order_list`);
the bus binds them when it is built, so tests pass fakes the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from examples.orders.domain import AlreadyExists, Order, OrderStatus, User
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
    OrderEvent,
    PayOrder,
    PlaceOrder,
    ShipOrder,
)
from examples.orders.views import OrderList, OrderSummary
from tidings import AggregateNotFound, Envelope, Event, EventSourced, Router, UnitOfWork

router = Router()

Clock = Callable[[], datetime]
"""The current time, as an aware datetime."""

ES = TypeVar("ES", bound=EventSourced)


def _create(uow: UnitOfWork, aggregate: EventSourced) -> None:
    with uow:
        repository = uow.repository(type(aggregate))
        if repository.get(aggregate.id) is not None:
            raise AlreadyExists(f"{type(aggregate).__name__} {aggregate.id} already exists")
        repository.add(aggregate)
        uow.commit()


def _change(
    uow: UnitOfWork, kind: type[ES], aggregate_id: str, change: Callable[[ES], None]
) -> None:
    with uow:
        aggregate = uow.repository(kind).get(aggregate_id)
        if aggregate is None:
            raise AggregateNotFound(kind.__name__, aggregate_id)
        change(aggregate)
        uow.commit()


@router.handler
def place_order(cmd: PlaceOrder, uow: UnitOfWork) -> str:
    _create(uow, Order.place(cmd.order_id, cmd.customer_id, cmd.items, cmd.currency))
    return cmd.order_id


@router.handler
def confirm_order(cmd: ConfirmOrder, uow: UnitOfWork, clock: Clock) -> None:
    _change(uow, Order, cmd.order_id, lambda order: order.confirm(at=clock()))


@router.handler
def pay_order(cmd: PayOrder, uow: UnitOfWork) -> None:
    _change(uow, Order, cmd.order_id, lambda order: order.pay(cmd.payment_id, cmd.payment_method))


@router.handler
def ship_order(cmd: ShipOrder, uow: UnitOfWork, clock: Clock) -> None:
    _change(
        uow,
        Order,
        cmd.order_id,
        lambda order: order.ship(cmd.tracking_number, cmd.carrier, at=clock()),
    )


@router.handler
def deliver_order(cmd: DeliverOrder, uow: UnitOfWork, clock: Clock) -> None:
    _change(uow, Order, cmd.order_id, lambda order: order.deliver(at=clock()))


@router.handler
def cancel_order(cmd: CancelOrder, uow: UnitOfWork, clock: Clock) -> None:
    _change(uow, Order, cmd.order_id, lambda order: order.cancel(cmd.reason, at=clock()))


@router.handler
def create_user(cmd: CreateUser, uow: UnitOfWork) -> str:
    _create(uow, User.create(cmd.user_id, cmd.name, cmd.email))
    return cmd.user_id


@router.handler
def change_user_email(cmd: ChangeUserEmail, uow: UnitOfWork) -> None:
    _change(uow, User, cmd.user_id, lambda user: user.change_email(cmd.new_email))


@router.handler
def deactivate_user(cmd: DeactivateUser, uow: UnitOfWork) -> None:
    _change(uow, User, cmd.user_id, lambda user: user.deactivate())


@router.handler
def update_order_list(event: OrderEvent, envelope: Envelope[Event], order_list: OrderList) -> None:
    order_list.apply(event, envelope.occurred_at)


@router.handler
def get_order(query: GetOrder, order_list: OrderList) -> OrderSummary | None:
    return order_list.get(query.order_id)


@router.handler
def get_customer_orders(query: GetCustomerOrders, order_list: OrderList) -> list[OrderSummary]:
    return order_list.for_customer(query.customer_id)


@router.handler
def get_pending_orders(query: GetPendingOrders, order_list: OrderList) -> list[OrderSummary]:
    return order_list.with_status(OrderStatus.PENDING)
