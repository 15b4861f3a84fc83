"""The order saga of examples/orders on SQLite and PostgreSQL: success, failures, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from examples.orders.bootstrap import bootstrap
from examples.orders.domain import Order, OrderStatus
from examples.orders.messages import OrderItem
from examples.orders.saga import ORDER_SAGA, order_saga, saga_data
from examples.orders.services import PaymentDeclined, Services
from tests.services import postgres_dsn
from tidings import UnitOfWork
from tidings.sagas import SagaRunner, SagaStatus

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [OrderItem("lamp", 2, Decimal("19.90")), OrderItem("bulb", 4, Decimal("2.50"))]


class Crash(BaseException):
    """Stands for the process dying: nothing in tidings catches it."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.db'}"
        return
    import psycopg
    from psycopg import sql

    dsn = postgres_dsn()
    schema = f"order_saga_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def open_url(url: str) -> Any:
    from tidings.store.urls import open_store

    return open_store(url)


def runner(store: Any, services: Services, payment_timeout: float = 30.0) -> SagaRunner:
    saga = order_saga(
        bootstrap(store=store, retry_waits=False), services, payment_timeout=payment_timeout
    )
    return SagaRunner(store, [saga])


def order_status(store: Any, order_id: str) -> OrderStatus | None:
    with UnitOfWork(store) as uow:
        order = uow.repository(Order).get(order_id)
    return None if order is None else order.status


def test_the_happy_path_places_reserves_charges_confirms_and_notifies(store_url: str) -> None:
    store, services = open_url(store_url), Services.create()
    try:
        state = runner(store, services).start(ORDER_SAGA, "o1", saga_data("c1", ITEMS))
        assert state.status is SagaStatus.COMPLETED
        assert order_status(store, "o1") is OrderStatus.CONFIRMED
        (charge,) = services.payments.ledger.of_kind("charged")
        assert charge["amount"] == "49.80" and state.data["payment"] == charge["payment"]
        assert len(services.inventory.ledger.of_kind("reserved")) == 1
        assert len(services.notifications.ledger.of_kind("sent")) == 1
        assert services.inventory.ledger.of_kind("released") == []
    finally:
        store.close()


def test_a_declined_payment_releases_the_stock_and_cancels_the_order(store_url: str) -> None:
    store, services = open_url(store_url), Services.create()
    services.payments.fail = PaymentDeclined("card expired")
    try:
        state = runner(store, services).start(ORDER_SAGA, "o2", saga_data("c1", ITEMS))
        assert state.status is SagaStatus.COMPENSATED
        assert state.error == "PaymentDeclined: card expired"
        assert state.compensated == ["reserve_inventory", "place_order"]
        assert order_status(store, "o2") is OrderStatus.CANCELLED
        (reserved,) = services.inventory.ledger.of_kind("reserved")
        (released,) = services.inventory.ledger.of_kind("released")
        assert released["reservation"] == reserved["reservation"]
        assert services.payments.ledger.of_kind("charged") == []
        assert services.notifications.ledger.of_kind("sent") == []
    finally:
        store.close()


def test_a_crash_between_steps_resumes_where_it_stopped(store_url: str) -> None:
    store, services = open_url(store_url), Services.create()
    services.notifications.fail = Crash()
    try:
        with pytest.raises(Crash):
            runner(store, services).start(ORDER_SAGA, "o3", saga_data("c1", ITEMS))
    finally:
        store.close()
    services.notifications.fail = None
    restarted = open_url(store_url)
    try:
        (state,) = runner(restarted, services).recover()
        assert (state.saga_id, state.status) == ("o3", SagaStatus.COMPLETED)
        assert order_status(restarted, "o3") is OrderStatus.CONFIRMED
        assert len(services.payments.ledger.of_kind("charged")) == 1
        assert services.payments.ledger.calls == 1  # the charge was recorded: not called again
        assert len(services.notifications.ledger.of_kind("sent")) == 1
        assert runner(restarted, services).recover() == []
    finally:
        restarted.close()


def test_a_crash_after_an_effect_repeats_the_call_with_its_key_and_it_lands_once(
    store_url: str,
) -> None:
    store, services = open_url(store_url), Services.create()
    services.inventory.delay = 0.0
    real_charge = services.payments.charge

    def charge_then_crash(key: str, customer_id: str, amount: str) -> str:
        real_charge(key, customer_id, amount)
        raise Crash()

    services.payments.charge = charge_then_crash  # type: ignore[method-assign]
    try:
        with pytest.raises(Crash):
            runner(store, services).start(ORDER_SAGA, "o4", saga_data("c1", ITEMS))
    finally:
        store.close()
    services.payments.charge = real_charge  # type: ignore[method-assign]
    restarted = open_url(store_url)
    try:
        (state,) = runner(restarted, services).recover()
        assert state.status is SagaStatus.COMPLETED
        assert services.payments.ledger.calls == 2
        assert len(services.payments.ledger.of_kind("charged")) == 1
    finally:
        restarted.close()


def test_a_payment_that_times_out_is_compensated_refund_included(store_url: str) -> None:
    store, services = open_url(store_url), Services.create()
    services.payments.delay = 0.3
    try:
        state = runner(store, services, payment_timeout=0.1).start(
            ORDER_SAGA, "o5", saga_data("c1", ITEMS)
        )
        assert state.status is SagaStatus.COMPENSATED
        assert "charge_payment" in (state.error or "") and "deadline" in (state.error or "")
        assert state.compensated == ["charge_payment", "reserve_inventory", "place_order"]
        assert order_status(store, "o5") is OrderStatus.CANCELLED
        # The late charge landed; its compensation refunded it.
        (charged,) = services.payments.ledger.of_kind("charged")
        (refunded,) = services.payments.ledger.of_kind("refunded")
        assert refunded["payment"] == charged["payment"]
    finally:
        store.close()


def test_a_deadline_outlives_a_crash_while_waiting(store_url: str) -> None:
    store, services = open_url(store_url), Services.create()
    services.payments.fail = Crash()
    try:
        with pytest.raises(Crash):
            runner(store, services, payment_timeout=0.2).start(
                ORDER_SAGA, "o6", saga_data("c1", ITEMS)
            )
    finally:
        store.close()
    services.payments.fail = None
    import time

    time.sleep(0.3)
    restarted = open_url(store_url)
    try:
        # The deadline recorded before the crash has passed: no charge now, compensate.
        (state,) = runner(restarted, services, payment_timeout=0.2).recover()
        assert state.status is SagaStatus.COMPENSATED
        assert services.payments.ledger.of_kind("charged") == []
        assert order_status(restarted, "o6") is OrderStatus.CANCELLED
    finally:
        restarted.close()


def test_a_worker_killed_mid_saga_is_finished_by_the_next_one(
    store_url: str, tmp_path: Path
) -> None:
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    command = [sys.executable, "-m", "tests.examples.order_saga_worker", store_url, str(ledgers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [*command, "start", "o7"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "charged"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    finished = subprocess.run(
        [*command, "recover"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["o7", "completed"]
    services = Services.create(ledgers)
    assert len(services.payments.ledger.of_kind("charged")) == 1
    assert len(services.inventory.ledger.of_kind("reserved")) == 1
    assert len(services.notifications.ledger.of_kind("sent")) == 1
    store = open_url(store_url)
    try:
        assert order_status(store, "o7") is OrderStatus.CONFIRMED
    finally:
        store.close()


def test_the_demo_runs_one_saga_through_and_compensates_the_declined_one(
    tmp_path: Path,
) -> None:
    from examples.orders.saga_demo import run

    through, declined = run(tmp_path / "orders.db")
    assert through.status is SagaStatus.COMPLETED
    assert declined.status is SagaStatus.COMPENSATED
    assert declined.compensated == ["reserve_inventory", "place_order"]
