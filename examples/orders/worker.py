"""What the orders service runs in the background, for `tidings worker`.

::

    tidings worker examples.orders.worker:worker --store sqlite:///orders.db

Its three read models are kept from the log by one worker process. The order
list is split into four partitions by order: start the same command again
(on this machine or, with a PostgreSQL store, on another) and the workers
share those partitions out, each order's events still applied in order.
"""

from __future__ import annotations

from examples.orders.projections import projections
from tidings import EventStore, Worker

__all__ = ["worker"]


def worker(store: EventStore) -> Worker:
    """The orders service's worker on `store` (the store `tidings worker --store` opened)."""
    return Worker(store, projections=projections(store), poll_interval=0.2, lease=5.0)
