"""A worker for `tidings worker tests.observability.worker_app:worker --metrics-port 0`."""

from __future__ import annotations

from typing import Any

from tests.observability.bank import Accounts
from tidings import Worker


def worker(store: Any) -> Worker:
    return Worker(store, projections=[Accounts()], poll_interval=0.05, lease=1.0)
