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
  transaction (the store's watermark lag); `tidings.projection.position`
  (gauge): the last position processed. All three come from a projection
  runner's `status()`: see `watch_projections` and `watch_async_projections`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation, get_meter

from tidings.projections.projection import ProjectionStatus

__all__ = ["Instruments", "watch_async_projections", "watch_projections"]


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


class AsyncStatusSource(Protocol):
    """An `AsyncProjectionRunner`, or the `runner` of an `AsyncWorker`."""

    async def status(self) -> list[ProjectionStatus]: ...


def watch_projections(runner: StatusSource, meter_provider: MeterProvider | None = None) -> None:
    """Report `runner`'s projections' lag, position and the store's held-back events as gauges.

    Each collection (a scrape of the worker's metrics endpoint) reads
    `runner.status()`, one query of the store per projection; the gauges of
    one collection share that reading.
    """
    read: list[float] = [-math.inf]
    statuses: list[ProjectionStatus] = []

    def current() -> list[ProjectionStatus]:
        if time.monotonic() - read[0] > 1.0:
            statuses[:] = runner.status()
            read[0] = time.monotonic()
        return statuses

    _gauges(current, meter_provider)


async def watch_async_projections(
    runner: AsyncStatusSource, meter_provider: MeterProvider | None = None, interval: float = 5.0
) -> None:
    """The gauges of `watch_projections` for an `AsyncProjectionRunner` (or `AsyncWorker.runner`).

    A collection cannot await, so this reads `await runner.status()` every
    `interval` seconds, until cancelled, and the gauges report the latest
    reading. Start it beside the runner, in its task group.
    """
    statuses: list[ProjectionStatus] = []
    _gauges(lambda: statuses, meter_provider)
    while True:
        statuses[:] = await runner.status()
        await anyio.sleep(interval)


def _gauges(
    current: Callable[[], list[ProjectionStatus]], meter_provider: MeterProvider | None
) -> None:
    meter = get_meter("tidings", meter_provider=meter_provider)

    def gauge(name: str, description: str, value: Callable[[ProjectionStatus], int]) -> None:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(value(found), {"tidings.projection": found.name}) for found in current()
            ]

        meter.create_observable_gauge(name, [observe], unit="{event}", description=description)

    gauge("tidings.projection.lag", "Events still to process", lambda found: found.lag)
    gauge(
        "tidings.projection.position",
        "The position of the last event processed",
        lambda found: found.position,
    )
    gauge(
        "tidings.projection.held_back",
        "Committed events hidden behind an open transaction",
        lambda found: found.held_back,
    )
