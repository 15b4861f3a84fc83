"""The OpenTelemetry instruments tidings records to, and the gauges of projections' lag.

Instruments (meter `tidings`):

- `tidings.handler.duration` (histogram, seconds): one message through the bus
  (`tidings.message.type`), or one projection batch (`tidings.handler`, the
  projection); `error.type` when it failed.
- `tidings.appends` (counter, events): events appended by units of work, by
  `messaging.destination.name`, the stream's category.
- `tidings.conflicts` (counter): commits refused because a stream moved on.
- `tidings.retries` and `tidings.dead_letters` (counters): by `tidings.handler`.
- `tidings.projection.lag` (gauge, events): what each projection or partition
  (`tidings.projection`) has still to process; `tidings.projection.held_back`
  (gauge, events): committed events readers cannot see yet behind an open
  transaction (the store's watermark lag). Both read from a (blocking)
  `ProjectionRunner` at each collection, see `watch_projections`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation, get_meter

from tidings.projections.projection import ProjectionStatus

__all__ = ["Instruments", "watch_projections"]


class Instruments:
    """The counters and histograms of one meter."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "tidings.handler.duration", unit="s", description="Time to handle a message or batch"
        )
        self.appends = meter.create_counter(
            "tidings.appends", unit="{event}", description="Events appended by units of work"
        )
        self.conflicts = meter.create_counter(
            "tidings.conflicts", unit="{conflict}", description="Commits refused by a conflict"
        )
        self.retries = meter.create_counter(
            "tidings.retries", unit="{retry}", description="Handler attempts made again"
        )
        self.dead_letters = meter.create_counter(
            "tidings.dead_letters", unit="{letter}", description="Messages dead-lettered"
        )


class StatusSource(Protocol):
    """A blocking projection runner: `ProjectionRunner`, or the `runner` of a `Worker`."""

    def status(self) -> list[ProjectionStatus]: ...


def watch_projections(runner: StatusSource, meter_provider: MeterProvider | None = None) -> None:
    """Report `runner`'s projections' lag and the store's held-back events as gauges.

    Each collection (a scrape of the worker's metrics endpoint) reads
    `runner.status()`: one query of the store per projection.
    """
    meter = get_meter("tidings", meter_provider=meter_provider)
    read: list[float] = [-1.0]
    statuses: list[ProjectionStatus] = []

    def current() -> list[ProjectionStatus]:
        # Both gauges of one collection share a reading.
        if time.monotonic() - read[0] > 1.0:
            statuses[:] = runner.status()
            read[0] = time.monotonic()
        return statuses

    def lag(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(found.lag, {"tidings.projection": found.name}) for found in current()]

    def held_back(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(found.held_back, {"tidings.projection": found.name}) for found in current()
        ]

    meter.create_observable_gauge(
        "tidings.projection.lag", [lag], unit="{event}", description="Events still to process"
    )
    meter.create_observable_gauge(
        "tidings.projection.held_back",
        [held_back],
        unit="{event}",
        description="Committed events hidden behind an open transaction",
    )
