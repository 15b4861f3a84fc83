"""A projection that records which runner handled each event and when, and a process to run it.

    python -m tests.reliability.tenure STORE_URL TABLE LEASE

Each event handled adds a row (position, event id, runner's pid, time) in
the transaction that moves the checkpoint, so only the batches a runner was
allowed to commit are recorded: the rows tell who was active when.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable

from tests.projections.ledger import Deposited, _run
from tidings import Envelope
from tidings.projections import Projection, ProjectionRunner, handles
from tidings.store.urls import open_store


class Tenure(Projection[object]):
    name = "tenure"

    def __init__(self, table: str) -> None:
        self.table = table

    def setup(self, tx: object) -> Awaitable[None] | None:
        return _run(
            tx,
            (
                f"CREATE TABLE IF NOT EXISTS {self.table} (position BIGINT PRIMARY KEY,"
                " event_id TEXT NOT NULL, runner BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL)",
                (),
            ),
        )

    def reset(self, tx: object) -> Awaitable[None] | None:
        return _run(tx, (f"DELETE FROM {self.table}", ()))

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        return _run(
            tx,
            (
                f"INSERT INTO {self.table} (position, event_id, runner, at) VALUES (?, ?, ?, ?)",
                (envelope.position, str(envelope.message_id), os.getpid(), time.time()),
            ),
        )


def main(url: str, table: str, lease: float) -> None:
    store = open_store(url)
    runner = ProjectionRunner(
        store, [Tenure(table)], batch_size=10, poll_interval=0.02, lease=lease
    )
    runner.prepare()
    print("running", flush=True)
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
