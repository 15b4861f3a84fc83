"""Process managers run by a projection runner in a process of their own, to be killed.

    python -m tests.sagas.process_worker STORE_URL LOG_FILE ORDER_ID hang|finish

Each `RequestPayment` sent is written to LOG_FILE as `<message id> <order id>`.
With `hang`, its handler prints `handling` and sleeps, to be killed there;
with `finish`, the worker stops once the process of ORDER_ID has reacted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.sagas.test_processes import Payment, RequestPayment
from tidings import Envelope, MessageBus, Router
from tidings.projections import ProjectionRunner
from tidings.sagas import Processes
from tidings.scheduling import Scheduler
from tidings.store.urls import open_store


def main(url: str, log: str, order_id: str, mode: str) -> None:
    router = Router()

    @router.handler
    def request_payment(command: RequestPayment, envelope: Envelope[RequestPayment]) -> None:
        with Path(log).open("a") as file:
            file.write(f"{envelope.message_id} {command.order_id}\n")
        if mode == "hang":
            print("handling", flush=True)
            time.sleep(60)

    store = open_store(url)
    try:
        processes = Processes(store, MessageBus(router), [Payment()], scheduler=Scheduler(store))
        runner = ProjectionRunner(store, processes.projections(), poll_interval=0.05, lease=1.0)
        with runner.running():
            while processes.state(Payment(), order_id) is None:
                time.sleep(0.05)
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
