"""In-process dispatch: commands per second with one handler, events per second with three.

Measured side by side, in one run, as ratios:

- the floor: a bare loop that pops a message from a deque, looks its handlers
  up in a dict and calls them (sync, and async awaiting each handler);
- the 20-line message bus of Architecture Patterns with Python (`benchmarks/book_bus.py`);
- the peers, python-cqrs (async) and lato (sync) (`benchmarks/peers.py`);
- tidings `MessageBus` and `AsyncMessageBus` (inside a running loop), without
  middleware and with one pass-through middleware.

Handlers do trivial work: a command handler returns a field, an event handler
stores one. Every contender is checked to return the command's result and to
reach all three event handlers before it is timed.

Run: `make bench`, or `uv run python -m benchmarks.bus [--repeats 7] [--seconds 0.2]`.
`--profile tidings --workload events` profiles one contender instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from typing import Any

from benchmarks import book_bus
from benchmarks.timing import Case, Result, async_timer, calibrate, measure, sync_timer

try:
    from benchmarks import peers
except ImportError as exc:  # the peers are a dependency group of their own
    raise SystemExit(f"{exc}: install the peers with `uv sync --all-extras --group bench`") from exc
from tidings import (
    AsyncMessageBus,
    AsyncMiddleware,
    Command,
    Envelope,
    Event,
    MessageBus,
    Middleware,
    Router,
)

WORKLOADS = ("commands", "events")
PEERS = ("lato", "python-cqrs")
EXPECTED = 7  # the field every message carries; handlers return or store it

# The floor


@dataclass(frozen=True, slots=True)
class FloorPing:
    n: int


@dataclass(frozen=True, slots=True)
class FloorPinged:
    n: int


def floor_bus(handlers: Mapping[type[Any], Sequence[Callable[[Any], Any]]]) -> Callable[[Any], Any]:
    def handle(message: Any) -> Any:
        result = None
        queue = deque((message,))
        while queue:
            message = queue.popleft()
            for handler in handlers[type(message)]:
                result = handler(message)
        return result

    return handle


def async_floor_bus(
    handlers: Mapping[type[Any], Sequence[Callable[[Any], Awaitable[Any]]]],
) -> Callable[[Any], Awaitable[Any]]:
    async def handle(message: Any) -> Any:
        result = None
        queue = deque((message,))
        while queue:
            message = queue.popleft()
            for handler in handlers[type(message)]:
                result = await handler(message)
        return result

    return handle


# The book's bus


@dataclass(frozen=True)
class BookPing(book_bus.Command):
    n: int


@dataclass(frozen=True)
class BookPinged(book_bus.Event):
    n: int


class NoEventsUnitOfWork:
    def collect_new_events(self) -> list[book_bus.Message]:
        return []


# tidings


@dataclass(frozen=True, slots=True)
class Ping(Command):
    n: int


@dataclass(frozen=True, slots=True)
class Pinged(Event):
    n: int


def tidings_router(seen: list[int]) -> Router:
    router = Router()

    @router.handler
    def ping(command: Ping) -> int:
        return command.n

    for slot in range(3):
        router.handler(_tidings_store(seen, slot))
    return router


def async_tidings_router(seen: list[int]) -> Router:
    router = Router()

    @router.handler
    async def ping(command: Ping) -> int:
        return command.n

    for slot in range(3):
        router.handler(_async_tidings_store(seen, slot))
    return router


def _tidings_store(seen: list[int], slot: int) -> Callable[[Pinged], None]:
    def on_pinged(event: Pinged) -> None:
        seen[slot] = event.n

    on_pinged.__qualname__ = f"on_pinged_{slot}"  # handlers are told apart by name
    return on_pinged


def _async_tidings_store(seen: list[int], slot: int) -> Callable[[Pinged], Awaitable[None]]:
    async def on_pinged(event: Pinged) -> None:
        seen[slot] = event.n

    on_pinged.__qualname__ = f"on_pinged_{slot}"  # handlers are told apart by name
    return on_pinged


def pass_through(envelope: Envelope[Any], call_next: Callable[[Envelope[Any]], Any]) -> Any:
    return call_next(envelope)


async def async_pass_through(
    envelope: Envelope[Any], call_next: Callable[[Envelope[Any]], Awaitable[Any]]
) -> Any:
    return await call_next(envelope)


# Contenders


@dataclass(frozen=True)
class Contender:
    key: str  # the name --profile takes
    name: str
    flavour: str  # "sync", or "async": its sends return awaitables
    send_command: Callable[[Any], Any]
    command: Any
    send_event: Callable[[Any], Any]
    event: Any
    seen: list[int]  # where the three event handlers store the event's field

    def case(self, workload: str, runner: asyncio.Runner) -> Case:
        if workload == "commands":
            send, message = self.send_command, self.command
        else:
            send, message = self.send_event, self.event
        if self.flavour == "async":
            return Case(self.key, self.name, async_timer(send, message, runner), "async")
        return Case(self.key, self.name, sync_timer(send, message), "sync")

    def check(self, runner: asyncio.Runner) -> None:
        """Fail unless the command's result comes back and all three event handlers ran."""

        def call(send: Callable[[Any], Any], message: Any) -> Any:
            if self.flavour == "async":

                async def sending() -> Any:
                    return await send(message)

                return runner.run(sending())
            return send(message)

        result = call(self.send_command, self.command)
        if result not in (EXPECTED, [EXPECTED]):  # the book's bus returns a list of results
            raise AssertionError(f"{self.name}: command returned {result!r}, not {EXPECTED}")
        self.seen[:] = [0, 0, 0]
        call(self.send_event, self.event)
        if self.seen != [EXPECTED] * 3:
            raise AssertionError(f"{self.name}: event handlers saw {self.seen}")


def contenders() -> list[Contender]:
    return [
        floor(),
        async_floor(),
        book(),
        lato(),
        python_cqrs(),
        tidings(),
        tidings(pass_through),
        async_tidings(),
        async_tidings(async_pass_through),
    ]


def floor() -> Contender:
    seen = [0, 0, 0]
    handle = floor_bus(
        {FloorPing: [_field], FloorPinged: [_store(seen, slot) for slot in range(3)]}
    )
    command, event = FloorPing(EXPECTED), FloorPinged(EXPECTED)
    return Contender("floor", "floor (bare loop)", "sync", handle, command, handle, event, seen)


def async_floor() -> Contender:
    seen = [0, 0, 0]
    handle = async_floor_bus(
        {FloorPing: [_async_field], FloorPinged: [_async_store(seen, slot) for slot in range(3)]}
    )
    command, event = FloorPing(EXPECTED), FloorPinged(EXPECTED)
    name = "floor, async (bare loop)"
    return Contender("floor-async", name, "async", handle, command, handle, event, seen)


def book() -> Contender:
    seen = [0, 0, 0]
    bus = book_bus.MessageBus(
        NoEventsUnitOfWork(),
        event_handlers={BookPinged: [_store(seen, slot) for slot in range(3)]},
        command_handlers={BookPing: _field},
    )
    command, event = BookPing(EXPECTED), BookPinged(EXPECTED)
    return Contender(
        "book", "book's MessageBus", "sync", bus.handle, command, bus.handle, event, seen
    )


def lato() -> Contender:
    seen = [0, 0, 0]
    app = peers.lato_app(seen)
    command, event = peers.LatoPing(n=EXPECTED), peers.LatoPinged(n=EXPECTED)
    name = f"lato {version('lato')}"
    return Contender("lato", name, "sync", app.execute, command, app.publish, event, seen)


def python_cqrs() -> Contender:
    seen = [0, 0, 0]
    requests, events = peers.cqrs_mediators(seen)
    command, event = peers.CqrsPing(n=EXPECTED), peers.CqrsPinged(n=EXPECTED)
    name = f"python-cqrs {version('python-cqrs')}"
    return Contender("python-cqrs", name, "async", requests.send, command, events.send, event, seen)


def tidings(*middleware: Middleware) -> Contender:
    seen = [0, 0, 0]
    bus = MessageBus(tidings_router(seen), middleware=middleware)
    key, name = "tidings", "tidings MessageBus"
    if middleware:
        key, name = f"{key}+mw", f"{name} + 1 middleware"
    command, event = Ping(EXPECTED), Pinged(EXPECTED)
    return Contender(key, name, "sync", bus.handle, command, bus.handle, event, seen)


def async_tidings(*middleware: AsyncMiddleware) -> Contender:
    seen = [0, 0, 0]
    bus = AsyncMessageBus(async_tidings_router(seen), middleware=middleware)
    key, name = "tidings-async", "tidings AsyncMessageBus"
    if middleware:
        key, name = f"{key}+mw", f"{name} + 1 middleware"
    command, event = Ping(EXPECTED), Pinged(EXPECTED)
    return Contender(key, name, "async", bus.handle, command, bus.handle, event, seen)


def _field(command: Any) -> Any:
    return command.n


def _store(seen: list[int], slot: int) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        seen[slot] = event.n

    return on_event


async def _async_field(command: Any) -> Any:
    return command.n


def _async_store(seen: list[int], slot: int) -> Callable[[Any], Awaitable[None]]:
    async def on_event(event: Any) -> None:
        seen[slot] = event.n

    return on_event


# Report


def table(results: Sequence[Result]) -> list[str]:
    by_key = {result.case.key: result for result in results}
    references: list[str | None] = [None, "book", *PEERS]  # None: the floor of the same flavour
    header = ["", "msg/s", "vs floor", "vs book", *(f"vs {peer}" for peer in PEERS), "spread"]
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for result in results:
        cells = [result.case.name, f"{result.rate:,.0f}"]
        for reference in references:
            if reference is None:
                reference = "floor" if result.case.flavour == "sync" else "floor-async"
            cells.append(f"{result.rate / by_key[reference].rate:.2f}x")
        cells.append(f"{result.spread:.0%}")
        rows.append(cells)
    return ["| " + " | ".join(row) + " |" for row in rows]


def aims(results: Mapping[str, Sequence[Result]]) -> list[str]:
    """Each tidings bus (no middleware) against the project's two aims."""
    lines = []
    for workload, workload_results in results.items():
        by_key = {result.case.key: result for result in workload_results}
        best_peer = max((by_key[peer] for peer in PEERS), key=lambda result: result.rate)
        book = by_key["book"]
        for key in ("tidings", "tidings-async"):
            ours = by_key[key]
            vs_peer = ours.rate / best_peer.rate
            vs_book = ours.rate / book.rate
            met_peer, met_book = vs_peer > 1, vs_book >= 0.5
            lines.append(
                f"- {ours.case.name}, {workload}: {vs_peer:.2f}x the fastest peer "
                f"({best_peer.case.name}): {'met' if met_peer else 'MISSED'}; "
                f"{vs_book:.2f}x the book's bus: {'met' if met_book else 'MISSED'}"
            )
    return lines


def describe_machine() -> str:
    return (
        f"{date.today().isoformat()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    )


def run_benchmark(repeats: int, seconds: float) -> None:
    with asyncio.Runner() as runner:
        found = contenders()
        for contender in found:
            contender.check(runner)
        results = {
            workload: measure(
                [contender.case(workload, runner) for contender in found],
                repeats=repeats,
                seconds=seconds,
            )
            for workload in WORKLOADS
        }
    print(
        f"In-process dispatch, median of {repeats} runs of ~{seconds}s each: {describe_machine()}"
    )
    print("(floor = the bare loop of the same flavour; spread = (max - min) / median)")
    for workload, title in zip(
        WORKLOADS, ("Commands, one handler", "Events, three handlers"), strict=True
    ):
        print(f"\n{title}\n")
        print("\n".join(table(results[workload])))
    print("\nAims: faster than every peer; at least half the book's bus's rate.\n")
    print("\n".join(aims(results)))


def profile(key: str, workload: str, seconds: float) -> None:
    with asyncio.Runner() as runner:
        chosen = [contender for contender in contenders() if contender.key == key]
        if not chosen:
            keys = ", ".join(contender.key for contender in contenders())
            raise SystemExit(f"no contender {key!r}; choose one of {keys}")
        case = chosen[0].case(workload, runner)
        n = calibrate(case.run, seconds)
        profiler = cProfile.Profile()
        profiler.runcall(case.run, n)
    print(f"{case.name}, {workload}: {n:,} messages")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per contender")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of each run")
    parser.add_argument("--profile", metavar="CONTENDER", help="profile one contender instead")
    parser.add_argument("--workload", choices=WORKLOADS, default="commands")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, args.workload, args.seconds * 5)
    else:
        run_benchmark(args.repeats, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
