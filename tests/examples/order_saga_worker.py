"""Runs the order saga in a process of its own, for the test that kills it mid-saga.

    python -m tests.examples.order_saga_worker STORE_URL LEDGER_DIR start ORDER_ID
    python -m tests.examples.order_saga_worker STORE_URL LEDGER_DIR recover

`start` stops, asleep, right after the payment service has charged and
before the saga records it, printing `charged`: the test kills it there.
`recover` resumes every unfinished order saga and prints each one's status.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

from examples.orders.bootstrap import bootstrap
from examples.orders.messages import OrderItem
from examples.orders.saga import ORDER_SAGA, order_saga, saga_data
from examples.orders.services import Payments, Services
from tidings.sagas import SagaRunner
from tidings.store.urls import open_store


class ChargeThenHang(Payments):
    def charge(self, key: str, customer_id: str, amount: str) -> str:
        payment = super().charge(key, customer_id, amount)
        print("charged", flush=True)
        time.sleep(60)
        return payment


def main(url: str, ledgers: str, command: str, *order_ids: str) -> None:
    store = open_store(url)
    services = Services.create(Path(ledgers))
    if command == "start":
        services.payments = ChargeThenHang(services.payments.ledger)
    runner = SagaRunner(store, [order_saga(bootstrap(store=store), services)])
    try:
        if command == "start":
            items = [OrderItem("lamp", 2, Decimal("19.90"))]
            runner.start(ORDER_SAGA, order_ids[0], saga_data("c1", items))
        else:
            for state in runner.recover():
                print(state.saga_id, state.status.value, flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
