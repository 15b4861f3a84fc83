"""A worker as an application declares it, for `tidings worker tests.workers.app:worker`."""

from __future__ import annotations

from typing import Any

from tests.workers.visits import Visits
from tidings import Worker


def worker(store: Any) -> Worker:
    return Worker(store, projections=[Visits("visit_history", 4)], poll_interval=0.05, lease=1.0)
