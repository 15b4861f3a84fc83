"""Scheduled commands shared by two live schedulers whose lease is shorter than a batch.

Each scheduler claims a whole batch under one lease, and handling the batch
takes longer than the lease. A scheduler that did not hold on to its claim
while handling would see the other claim the rest of its batch once the
lease ran out, and both would deliver those commands.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tidings import Command, Envelope, MessageBus, Router
from tidings.scheduling import Scheduler
from tidings.store.urls import open_store

COMMANDS = 30
HANDLING = 0.1  # seconds per command: a batch of 30 takes 3 s
LEASE = 1.0
DEADLINE = 60.0


@dataclass(frozen=True)
class Remind(Command):
    order_id: str


def test_two_schedulers_with_a_lease_shorter_than_a_batch_fire_each_command_once(
    store_url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("scheduled commands, 2 schedulers, lease 1 s < batch 3 s", workers=2)
    history = History()
    delivered: list[UUID] = []
    lock = threading.Lock()
    router = Router()

    @router.handler
    def remind(command: Remind, envelope: Envelope[Remind]) -> None:
        with lock:
            delivered.append(envelope.message_id)
        time.sleep(HANDLING)

    setup = open_store(store_url)
    try:
        scheduler = Scheduler(setup, commands=[Remind])
        for n in range(COMMANDS):
            schedule_id = uuid4()
            operation = history.invoke(schedule_id, "client")
            scheduler.schedule(Remind(f"o{n}"), after=rng.uniform(0, 0.2), schedule_id=schedule_id)
            history.complete(operation, "ok")
        figures.events = COMMANDS

        stores = [open_store(store_url) for _ in range(2)]
        schedulers = [
            Scheduler(store, bus=MessageBus(router), commands=[Remind], lease=LEASE)
            for store in stores
        ]
        threads = [
            threading.Thread(target=s.run, kwargs={"poll_interval": rng.uniform(0.02, 0.1)})
            for s in schedulers
        ]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + DEADLINE
            while scheduler.pending() and time.monotonic() < deadline:
                time.sleep(0.05)
            # The commands a lapsed claim would hand to the other are due at once: give
            # both schedulers a lease more to deliver any such repeat.
            time.sleep(LEASE + 0.5)
        finally:
            for s in schedulers:
                s.stop()
            for thread in threads:
                thread.join(timeout=30)
            for store in stores:
                store.close()
        assert scheduler.pending() == []
    finally:
        setup.close()
    found = history.check(delivered)
    figures.lost, figures.doubled = len(found.lost), len(found.doubled)
    figures.report(record_property)
    assert not found, f"{found} ({history.summary()})"
