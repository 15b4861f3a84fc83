"""The order saga: place the order, reserve stock, charge, confirm, notify; undo on failure.

Each step calls one service with the step's idempotency key, so that a step
run again after a crash takes effect once. When a step fails, or the
payment takes longer than `payment_timeout`, the steps done are compensated
in reverse: the payment refunded, the stock released, the order cancelled.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from examples.orders.domain import AlreadyExists, InvalidTransition, OrderStatus
from examples.orders.messages import CancelOrder, ConfirmOrder, OrderItem, PlaceOrder
from examples.orders.services import Services
from tidings import MessageBus
from tidings.sagas import Saga, Step, StepContext

__all__ = ["ORDER_SAGA", "order_saga", "saga_data"]

ORDER_SAGA = "OrderSaga"


def saga_data(customer_id: str, items: list[OrderItem], currency: str = "EUR") -> dict[str, Any]:
    """The order saga's starting data, as stored in its first event."""
    return {
        "customer_id": customer_id,
        "currency": currency,
        "items": [
            {"product_id": i.product_id, "quantity": i.quantity, "unit_price": str(i.unit_price)}
            for i in items
        ],
        "amount": str(sum(i.unit_price * i.quantity for i in items)),
    }


def order_saga(bus: MessageBus, services: Services, *, payment_timeout: float = 30.0) -> Saga:
    """The order saga over the orders service's `bus` and the outside `services`."""

    def place_order(step: StepContext) -> None:
        items = tuple(
            OrderItem(i["product_id"], i["quantity"], Decimal(i["unit_price"]))
            for i in step.data["items"]
        )
        # Placed already by an earlier run of this step, before a crash: nothing to do.
        with contextlib.suppress(AlreadyExists):
            bus.handle(PlaceOrder(step.saga_id, step.data["customer_id"], items))

    def cancel_order(step: StepContext) -> None:
        try:
            bus.handle(CancelOrder(step.saga_id, "the order saga was compensated"))
        except InvalidTransition as exc:
            if exc.status is not OrderStatus.CANCELLED:
                raise

    def reserve_inventory(step: StepContext) -> dict[str, Any]:
        reservation = services.inventory.reserve(
            step.idempotency_key, step.saga_id, step.data["items"]
        )
        return {"reservation": reservation}

    def release_inventory(step: StepContext) -> None:
        reserved = services.inventory.ledger.effects.get(step.action_key)
        if reserved is not None:
            services.inventory.release(step.idempotency_key, reserved["reservation"])

    def charge_payment(step: StepContext) -> dict[str, Any]:
        payment = services.payments.charge(
            step.idempotency_key, step.data["customer_id"], step.data["amount"]
        )
        return {"payment": payment}

    def refund_payment(step: StepContext) -> None:
        services.payments.refund(step.idempotency_key, step.action_key)

    def confirm_order(step: StepContext) -> None:
        try:
            bus.handle(ConfirmOrder(step.saga_id))
        except InvalidTransition as exc:
            if exc.status is not OrderStatus.CONFIRMED:
                raise

    def notify_customer(step: StepContext) -> None:
        services.notifications.send(
            step.idempotency_key, step.data["customer_id"], f"order {step.saga_id} is confirmed"
        )

    return Saga(
        ORDER_SAGA,
        [
            Step("place_order", place_order, cancel_order),
            Step("reserve_inventory", reserve_inventory, release_inventory),
            Step("charge_payment", charge_payment, refund_payment, timeout=payment_timeout),
            Step("confirm_order", confirm_order),
            Step("notify_customer", notify_customer),
        ],
    )
