"""A subscriber behind four busy writers catches up and follows live: each event once, in order.

The subscriber starts at the beginning of a log already holding a backlog,
while four writers keep appending; it reads in small batches, so it hands
over from catching up to following live while commits land, perhaps several
times. Every event a writer was told is stored must reach it exactly once,
in the order of `$all`, and nothing else may.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from uuid import UUID

from tests.projections.ledger import deposit
from tests.reliability.figures import Figures
from tests.reliability.history import History
from tidings.store.urls import open_store
from tidings.subscriptions import Subscription

WRITERS = 4
BACKLOG = 1_000
WRITING = 2.0  # seconds the writers go on once the subscriber started
DEADLINE = 60.0


def test_catching_up_under_four_writers_hands_over_to_live_without_a_gap_or_a_repeat(
    store_url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    figures = Figures("catch-up to live handover", workers=WRITERS)
    history = History()
    setup = open_store(store_url)
    batch = [deposit(f"a{n % 7}") for n in range(BACKLOG)]
    for event in batch:
        history.complete(history.invoke(event.event_id, "backlog"), "ok")
    setup.append("Backlog-1", batch)
    stop = threading.Event()
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]

    def write(worker: int) -> None:
        own, store = random.Random(seeds[worker]), open_store(store_url)
        try:
            while not stop.is_set():
                events = [deposit(f"a{own.randrange(7)}") for _ in range(own.randint(1, 4))]
                operations = [history.invoke(e.event_id, f"writer-{worker}") for e in events]
                try:
                    store.append(f"Account-{own.randrange(20)}", events)
                except Exception as exc:  # a lost answer: stored or not, the client cannot tell
                    for operation in operations:
                        history.complete(operation, "unknown", repr(exc))
                else:
                    for operation in operations:
                        history.complete(operation, "ok")
                time.sleep(own.uniform(0, 0.002))
        finally:
            store.close()

    received: list[tuple[int, UUID]] = []
    final_head = [0]  # set once the writers stopped
    done = threading.Event()
    reader = open_store(store_url)
    subscription = Subscription(reader, batch_size=rng.choice([20, 50, 100]), poll_interval=0.05)

    def follow() -> None:
        for record in subscription:
            received.append((record.position, record.event_id))
            if done.is_set() and record.position >= final_head[0]:
                return

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    subscriber = threading.Thread(target=follow)
    subscriber.start()
    for writer in writers:
        writer.start()
    time.sleep(WRITING)
    stop.set()
    for writer in writers:
        writer.join(timeout=30)
    final_head[0] = setup.watermark().last_position  # all committed, readable yet or not
    done.set()
    setup.append("Marker-1", [deposit("marker")])  # wakes a subscriber waiting at the head
    subscriber.join(timeout=DEADLINE)
    subscription.close()
    assert not subscriber.is_alive(), f"the subscriber stalled at {received[-1:]}"
    stored = [record.event_id for record in setup.read_all() if record.position <= final_head[0]]
    reader.close()
    setup.close()

    positions = [position for position, _ in received if position <= final_head[0]]
    assert positions == sorted(set(positions)), "positions out of order or repeated"
    seen = [event_id for position, event_id in received if position <= final_head[0]]
    assert seen == stored, "the subscriber did not see $all as stored"
    found = history.check(seen)
    figures.events = len(seen)
    figures.lost, figures.doubled = len(found.lost), len(found.doubled)
    figures.report(record_property)
    assert not found, f"{found} ({history.summary()})"
