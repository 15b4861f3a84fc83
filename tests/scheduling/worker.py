"""A scheduler in a process of its own, for the test that kills it while a command runs.

    python -m tests.scheduling.worker STORE_URL LOG_FILE hang|finish

Each `Remind` handled is written to LOG_FILE as `<message id> <order id>`.
With `hang`, the handler prints `handling` and sleeps, to be killed there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.scheduling.test_scheduler import Remind
from tidings import Envelope, MessageBus, Router
from tidings.scheduling import Scheduler
from tidings.store.urls import open_store


def main(url: str, log: str, mode: str) -> None:
    router = Router()

    @router.handler
    def remind(command: Remind, envelope: Envelope[Remind]) -> None:
        with Path(log).open("a") as file:
            file.write(f"{envelope.message_id} {command.order_id}\n")
        if mode == "hang":
            print("handling", flush=True)
            time.sleep(60)

    store = open_store(url)
    try:
        scheduler = Scheduler(store, bus=MessageBus(router), commands=[Remind], lease=1.0)
        while scheduler.fire_due() or scheduler.pending():
            time.sleep(0.05)
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
