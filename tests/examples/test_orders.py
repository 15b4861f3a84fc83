from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from examples.orders.bootstrap import bootstrap
from examples.orders.domain import (
    AlreadyExists,
    InvalidOrder,
    InvalidTransition,
    Order,
    OrderStatus,
    User,
)
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
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    PayOrder,
    PlaceOrder,
    ShipOrder,
    UserCreated,
    UserDeactivated,
    UserEmailChanged,
)
from examples.orders.views import OrderList
from tests.examples.running import run_example
from tidings import AggregateNotFound, Event
from tidings.testing import AggregateScenario, BusScenario, like

NOON = datetime(2031, 1, 1, 12, tzinfo=UTC)
LAMP = OrderItem("lamp", 2, Decimal("19.90"))
DESK = OrderItem("desk", 1, Decimal("249.00"))

PLACED = OrderPlaced("o1", "c1", (LAMP, DESK), Decimal("288.80"), "EUR")
CONFIRMED = OrderConfirmed("o1", NOON)
PAID = OrderPaid("o1", "p1", "card", Decimal("288.80"))
SHIPPED = OrderShipped("o1", "TN1", "DHL", NOON)
DELIVERED = OrderDelivered("o1", NOON)
CANCELLED = OrderCancelled("o1", "changed my mind", NOON)


def order() -> AggregateScenario[Order]:
    return AggregateScenario(Order, "o1")


# The Order aggregate.


def test_placing_an_order_records_its_items_and_total() -> None:
    outcome = order().when(Order.place, "o1", "c1", [LAMP, DESK]).then(PLACED)
    assert outcome.aggregate.status is OrderStatus.PENDING
    assert outcome.aggregate.version == 1


@pytest.mark.parametrize(
    ("items", "reason"),
    [([], "has no items"), ([OrderItem("lamp", 0, Decimal(1))], "quantity below 1")],
)
def test_an_order_needs_items(items: list[OrderItem], reason: str) -> None:
    order().when(Order.place, "o1", "c1", items).then_raises(InvalidOrder, match=reason)


@pytest.mark.parametrize(
    ("history", "action", "recorded", "status"),
    [
        ([PLACED], lambda o: o.confirm(NOON), CONFIRMED, "confirmed"),
        ([PLACED, CONFIRMED], lambda o: o.pay("p1", "card"), PAID, "paid"),
        ([PLACED, CONFIRMED, PAID], lambda o: o.ship("TN1", "DHL", NOON), SHIPPED, "shipped"),
        ([PLACED, CONFIRMED, PAID, SHIPPED], lambda o: o.deliver(NOON), DELIVERED, "delivered"),
        ([PLACED], lambda o: o.cancel("changed my mind", NOON), CANCELLED, "cancelled"),
        ([PLACED, CONFIRMED], lambda o: o.cancel("changed my mind", NOON), CANCELLED, "cancelled"),
        (
            [PLACED, CONFIRMED, PAID],
            lambda o: o.cancel("changed my mind", NOON),
            CANCELLED,
            "cancelled",
        ),
    ],
)
def test_allowed_transitions_record_their_event(
    history: list[Event],
    action: Callable[[Order], None],
    recorded: Event,
    status: str,
) -> None:
    outcome = order().given(*history).when(action).then(recorded)
    assert outcome.aggregate.status is OrderStatus(status)


@pytest.mark.parametrize(
    ("history", "action", "message"),
    [
        ([PLACED], lambda o: o.pay("p1", "card"), "cannot pay order o1: it is pending"),
        ([PLACED], lambda o: o.ship("TN1", "DHL", NOON), "cannot ship order o1: it is pending"),
        (
            [PLACED, CONFIRMED],
            lambda o: o.confirm(NOON),
            "cannot confirm order o1: it is confirmed",
        ),
        (
            [PLACED, CONFIRMED, PAID],
            lambda o: o.deliver(NOON),
            "cannot deliver order o1: it is paid",
        ),
        ([PLACED, CONFIRMED, PAID, SHIPPED], lambda o: o.cancel("x", NOON), "it is shipped"),
        ([PLACED, CONFIRMED, PAID, SHIPPED, DELIVERED], lambda o: o.cancel("x", NOON), "delivered"),
        (
            [PLACED, CANCELLED],
            lambda o: o.cancel("x", NOON),
            "cannot cancel order o1: it is cancelled",
        ),
        (
            [PLACED, CANCELLED],
            lambda o: o.confirm(NOON),
            "cannot confirm order o1: it is cancelled",
        ),
        ([], lambda o: o.confirm(NOON), "cannot confirm order o1: it is not placed"),
    ],
)
def test_forbidden_transitions_raise_naming_the_current_status(
    history: list[Event], action: Callable[[Order], None], message: str
) -> None:
    scenario = order().given(*history) if history else order().given(Order("o1"))
    error = scenario.when(action).then_raises(InvalidTransition, match=message)
    assert error.order_id == "o1"


def test_a_rebuilt_order_remembers_its_tracking_number() -> None:
    outcome = order().given(PLACED, CONFIRMED, PAID, SHIPPED).when(lambda o: None).then()
    assert outcome.aggregate.tracking_number == "TN1"
    assert outcome.aggregate.total == Decimal("288.80")


# The User aggregate.


def test_creating_a_user() -> None:
    outcome = (
        AggregateScenario(User)
        .when(User.create, "u1", "Ada", "ada@example.com")
        .then(UserCreated("u1", "Ada", "ada@example.com"))
    )
    assert outcome.aggregate.active is True


def test_changing_the_email_records_old_and_new() -> None:
    (
        AggregateScenario(User, "u1")
        .given(UserCreated("u1", "Ada", "ada@example.com"))
        .when(User.change_email, "ada@example.org")
        .then(UserEmailChanged("u1", "ada@example.com", "ada@example.org"))
    )


def test_changing_the_email_to_the_same_one_records_nothing() -> None:
    (
        AggregateScenario(User, "u1")
        .given(UserCreated("u1", "Ada", "ada@example.com"))
        .when(User.change_email, "ada@example.com")
        .then()
    )


def test_deactivating_records_once() -> None:
    created = UserCreated("u1", "Ada", "ada@example.com")
    outcome = (
        AggregateScenario(User, "u1")
        .given(created)
        .when(User.deactivate)
        .then(UserDeactivated("u1"))
    )
    assert outcome.aggregate.active is False
    AggregateScenario(User, "u1").given(created, UserDeactivated("u1")).when(User.deactivate).then()


# The service layer, through the bus.


@pytest.fixture
def service() -> BusScenario:
    return BusScenario.using(lambda store: bootstrap(store=store, clock=lambda: NOON))


def test_placing_an_order_returns_its_id(service: BusScenario) -> None:
    outcome = service.when(PlaceOrder("o1", "c1", (LAMP, DESK))).then(PLACED)
    assert outcome.result == "o1"
    assert outcome.envelopes[0].stream == "Order-o1"


def test_placing_the_same_order_twice_is_an_error(service: BusScenario) -> None:
    service.given("Order-o1", PLACED)
    service.when(PlaceOrder("o1", "c1", (LAMP,))).then_raises(AlreadyExists, match="Order o1")


def test_an_unknown_order_is_not_found(service: BusScenario) -> None:
    service.when(ConfirmOrder("o9")).then_raises(AggregateNotFound, match="Order 'o9' not found")


def test_an_order_is_rebuilt_from_its_stream_to_be_changed(service: BusScenario) -> None:
    service.given("Order-o1", PLACED, CONFIRMED, PAID)
    outcome = service.when(ShipOrder("o1", "TN1", "DHL")).then(SHIPPED)
    assert outcome.envelopes[0].version == 4


def test_a_forbidden_transition_reaches_the_caller_and_commits_nothing(
    service: BusScenario,
) -> None:
    service.given("Order-o1", PLACED)
    service.when(ShipOrder("o1", "TN1", "DHL")).then_raises(InvalidTransition, match="pending")
    assert service.store.stream_version("Order-o1") == 1


def test_real_timestamps_are_checked_with_like() -> None:
    service = BusScenario.using(lambda store: bootstrap(store=store))
    service.given("Order-o1", PLACED, CONFIRMED, PAID)
    before = datetime.now(UTC)
    service.when(ShipOrder("o1", "TN1", "DHL")).then(
        like(
            OrderShipped,
            order_id="o1",
            tracking_number="TN1",
            where=lambda e: e.shipped_at >= before,
        )
    )


def test_users_change_through_the_bus(service: BusScenario) -> None:
    service.when(CreateUser("u1", "Ada", "ada@example.com")).then(
        UserCreated("u1", "Ada", "ada@example.com")
    )
    service.when(ChangeUserEmail("u1", "ada@example.com")).then()
    service.when(DeactivateUser("u1")).then(UserDeactivated("u1"))
    service.when(DeactivateUser("u1")).then()
    service.when(CreateUser("u1", "Ada", "x@example.com")).then_raises(AlreadyExists)


def test_queries_read_the_order_list_that_events_keep_up_to_date() -> None:
    order_list = OrderList()
    service = BusScenario.using(
        lambda store: bootstrap(store=store, clock=lambda: NOON, order_list=order_list)
    )
    service.given_handled(
        PlaceOrder("o1", "c1", (LAMP, DESK)),
        PlaceOrder("o2", "c1", (LAMP,)),
        PlaceOrder("o3", "c2", (DESK,)),
        ConfirmOrder("o1"),
        PayOrder("o1", "p1", "card"),
        ShipOrder("o1", "TN1", "DHL"),
        DeliverOrder("o1"),
        CancelOrder("o2", "changed my mind"),
    )
    summary = service.when(GetOrder("o1")).then().result
    assert (summary.status, summary.tracking_number, summary.items_count) == (
        OrderStatus.DELIVERED,
        "TN1",
        3,
    )
    assert summary.total == Decimal("288.80")
    assert summary.placed_at <= datetime.now(UTC)
    mine = service.when(GetCustomerOrders("c1")).then().result
    assert [(s.order_id, s.status) for s in mine] == [
        ("o1", OrderStatus.DELIVERED),
        ("o2", OrderStatus.CANCELLED),
    ]
    pending = service.when(GetPendingOrders()).then().result
    assert [s.order_id for s in pending] == ["o3"]
    assert service.when(GetOrder("o9")).then().result is None


# The runnable scenario.


def test_the_scenario_runs_from_the_repository_root() -> None:
    out = run_example("examples.orders")
    assert "! InvalidTransition: cannot ship order order-2: it is cancelled" in out
    assert "- order-3 of customer-2: 1 items, 249.00 EUR, pending" in out
    assert (
        "10. User-user-1 v2: orders.UserEmailChanged\n  11. User-user-1 v3: orders.UserDeactivated"
        in out
    )
