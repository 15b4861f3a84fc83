"""A partitioned projection for the worker tests, and a worker process running it.

Each handled event adds a row to a history table in the read model's own
transaction: its stream, version, partition, and the lease (owner, fencing
token) it was handled under, in handling order (`id`). The tests read it back
to check that every event was handled once, in stream order, and that no two
workers were ever active on one partition.

`python -m tests.workers.visits URL TABLE PARTITIONS LEASE [POISON]` runs a
worker until SIGTERM; it prints `running` once prepared.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import Awaitable
from dataclasses import dataclass

from tests.projections.ledger import _run
from tidings import Codec, Envelope, Event, Worker
from tidings.projections import Projection, current_lease, handles
from tidings.store import NewEvent
from tidings.store.urls import open_store


@dataclass(frozen=True)
class Visited(Event, type_name="tests.workers.Visited"):
    n: int


CODEC = Codec(Visited)


def visit(n: int) -> NewEvent:
    return CODEC.new_event(Envelope.new(Visited(n)))


class Visits(Projection[object]):
    """The history of handled events in `table`; fails on the event numbered `poison`."""

    name = "visits"

    def __init__(self, table: str, partitions: int, poison: int | None = None) -> None:
        self.table = table
        self.partitions = partitions  # type: ignore[misc]
        self.poison = poison

    def setup(self, tx: object) -> Awaitable[None] | None:
        key = (
            "id INTEGER PRIMARY KEY AUTOINCREMENT"
            if isinstance(getattr(tx, "connection", None), sqlite3.Connection)
            else "id BIGSERIAL PRIMARY KEY"
        )
        return _run(
            tx,
            (
                f"CREATE TABLE IF NOT EXISTS {self.table} ({key}, stream TEXT NOT NULL,"
                " version BIGINT NOT NULL, position BIGINT NOT NULL, part BIGINT NOT NULL,"
                " owner TEXT NOT NULL, token BIGINT NOT NULL)",
                (),
            ),
        )

    def reset(self, tx: object) -> Awaitable[None] | None:
        return _run(tx, (f"DELETE FROM {self.table}", ()))

    @handles
    def visited(
        self, event: Visited, envelope: Envelope[Visited], tx: object
    ) -> Awaitable[None] | None:
        if event.n == self.poison:
            raise ValueError(f"poison event {event.n}")
        lease = current_lease()
        assert lease is not None
        return _run(
            tx,
            (
                f"INSERT INTO {self.table} (stream, version, position, part, owner, token)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    envelope.stream,
                    envelope.version,
                    envelope.position,
                    lease.partition,
                    lease.owner,
                    lease.token,
                ),
            ),
        )


def main(url: str, table: str, partitions: int, lease: float) -> None:
    store = open_store(url)
    worker = Worker(
        store,
        projections=[Visits(table, partitions)],
        lease=lease,
        poll_interval=0.05,
        batch_size=50,
    )
    worker.prepare()
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print("running", flush=True)
    worker.run()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
