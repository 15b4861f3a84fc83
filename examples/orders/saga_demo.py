"""Runs the order saga twice on a SQLite file: once through, once with the card declined.

python -m examples.orders.saga_demo [path.db]
"""

from __future__ import annotations

import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from examples.orders.bootstrap import bootstrap
from examples.orders.messages import OrderItem
from examples.orders.saga import ORDER_SAGA, order_saga, saga_data
from examples.orders.services import PaymentDeclined, Services
from tidings.sagas import SagaRunner, SagaState
from tidings.store import SQLiteStore


def run(path: Path) -> list[SagaState]:
    """Both sagas' final states, oldest first."""
    store = SQLiteStore(path)
    services = Services.create()
    runner = SagaRunner(store, [order_saga(bootstrap(store=store), services)])
    items = [OrderItem("lamp", 1, Decimal("19.90"))]
    try:
        # Sagas a crash interrupted earlier (when the file is reused) finish first.
        runner.recover()
        through = runner.start(ORDER_SAGA, "demo-1", saga_data("ada", items))
        services.payments.fail = PaymentDeclined("card declined")
        declined = runner.start(ORDER_SAGA, "demo-2", saga_data("bob", items))
        return [through, declined]
    finally:
        store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(directory) / "orders.db"
        for state in run(path):
            done = ", ".join(state.completed)
            undone = ", ".join(state.compensated) or "nothing"
            print(f"{state.saga_id}: {state.status.value}; done: {done}; undone: {undone}")
            if state.error:
                print(f"  because {state.error}")


if __name__ == "__main__":
    main()
