"""Runs the ledger projection until killed.

`python -m tests.projections.crash_runner URL PREFIX [LEASE]`
"""

from __future__ import annotations

import sys

from tests.projections.ledger import Ledger
from tidings.projections import ProjectionRunner
from tidings.store.urls import open_store


def main(url: str, prefix: str, lease: float) -> None:
    store = open_store(url)
    runner = ProjectionRunner(
        store, [Ledger(prefix)], batch_size=20, poll_interval=0.05, lease=lease
    )
    runner.prepare()
    print("running", flush=True)
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.5)
