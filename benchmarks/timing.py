"""Timing loops, calibration and the median of interleaved runs.

Each contender is a `Case` whose `run(n)` sends one message `n` times and
returns the seconds it took. Runs of all cases are interleaved, repeat by
repeat, so that noise from other work on the machine falls on every case alike
rather than on whichever happened to run at a busy moment.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TypeVar

__all__ = ["Case", "Result", "async_timer", "measure", "sync_timer"]

M = TypeVar("M")

Timer = Callable[[int], float]
"""Sends the message `n` times; returns the elapsed seconds."""


@dataclass(frozen=True)
class Case:
    key: str
    name: str
    run: Timer
    flavour: str  # "sync" or "async": which floor it is compared with


@dataclass(frozen=True)
class Result:
    case: Case
    rates: list[float]  # messages per second, one per repeat

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the repeats disagreed."""
        return (max(self.rates) - min(self.rates)) / self.rate


def sync_timer(handle: Callable[[M], object], message: M) -> Timer:
    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            handle(message)
        return perf_counter() - start

    return run


def async_timer(
    handle: Callable[[M], Awaitable[object]], message: M, runner: asyncio.Runner
) -> Timer:
    """Time `await handle(message)` inside the running loop of `runner`."""

    async def loop(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            await handle(message)
        return perf_counter() - start

    def run(n: int) -> float:
        return runner.run(loop(n))

    return run


def calibrate(run: Timer, seconds: float) -> int:
    """How many messages take about `seconds`; the runs it makes also warm the case up."""
    n = 1
    while True:
        elapsed = run(n)
        if elapsed >= seconds / 10:
            return max(1, round(n * seconds / elapsed))
        n *= 10


def measure(cases: Sequence[Case], *, repeats: int, seconds: float) -> list[Result]:
    """Median-ready rates of every case: `repeats` runs of about `seconds` each."""
    sizes = [calibrate(case.run, seconds) for case in cases]
    rates: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for case, n, case_rates in zip(cases, sizes, rates, strict=True):
            gc.collect()
            case_rates.append(n / case.run(n))
    return [Result(case, case_rates) for case, case_rates in zip(cases, rates, strict=True)]
