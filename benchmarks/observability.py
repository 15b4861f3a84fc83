"""What observing costs: a command with its commit and its event, uninstrumented and instrumented.

Measured side by side, in one run, as ratios to the uninstrumented bus:

- `MessageBus` dispatching a command that only returns a field, and one whose
  handler commits an event to a `MemoryStore` unit of work, its event handled
  after it (three messages' worth of work: command, append, event);
- each without `instrument`, with `instrument` and OpenTelemetry's default
  (no-op) providers, and with the SDK's providers recording every span (no
  exporter: the cost of making spans, not of shipping them);
- reads of the log: a `MemoryStore` and a `SQLiteStore` reading a stream of
  ten events, and a unit of work loading the aggregate of such a stream
  (`repository(...).get`, which reads it), in reads per second;
- the seams alone when nothing is instrumented (`hooks.publishing()` and
  `hooks.reading()` entered and left), in nanoseconds per call.

Run: `uv run python -m benchmarks.observability [--repeats 5] [--seconds 0.2]`.
"""

from __future__ import annotations

import argparse
import tempfile
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from benchmarks.timing import Case, Result, Timer, measure, sync_timer
from tidings import (
    Command,
    Event,
    EventSourced,
    MemoryStore,
    MessageBus,
    PerCall,
    Router,
    SQLiteStore,
    UnitOfWork,
    applies,
    new_id,
)
from tidings.observability import hooks, instrument, uninstrument


@dataclass(frozen=True)
class Ask(Command):
    n: int


@dataclass(frozen=True)
class Note(Command):
    n: int


@dataclass(frozen=True)
class Noted(Event, type_name="bench.observability.Noted"):
    n: int


class Pad(EventSourced):
    @applies
    def _noted(self, event: Noted) -> None:
        pass


def bus(store: MemoryStore) -> MessageBus:
    router = Router()

    @router.handler
    def ask(command: Ask) -> int:
        return command.n

    @router.handler
    def note(command: Note, uow: UnitOfWork) -> None:
        with uow:
            pad = Pad(str(new_id()))
            pad.record(Noted(command.n))
            uow.repository(Pad).add(pad)
            uow.commit()

    @router.handler
    def on_noted(event: Noted) -> None:
        pass

    return MessageBus(router, dependencies={"uow": PerCall(lambda: UnitOfWork(store))})


Providers = tuple[TracerProvider | None, MeterProvider | None]
# Each case's providers: None for "uninstrumented", the global (no-op) ones, or the SDK's.
SETUPS: dict[str, Providers | None] = {
    "uninstrumented": None,
    "instrument(), no-op providers": (None, None),
    "instrument(), SDK providers": (TracerProvider(), MeterProvider()),
}


def install(providers: Providers | None) -> None:
    """The hooks of one case: they are process-wide, so each case installs its own to run."""
    if providers is None:
        uninstrument()
    else:
        instrument(tracer_provider=providers[0], meter_provider=providers[1])


EVENTS = 10  # in the stream each read case reads


def filled(store: MemoryStore | SQLiteStore) -> str:
    """Commit a `Pad` of `EVENTS` events to `store`; its id."""
    pad = Pad(str(new_id()))
    for n in range(EVENTS):
        pad.record(Noted(n))
    with UnitOfWork(store) as uow:
        uow.repository(Pad).add(pad)
        uow.commit()
    return str(pad.id)


def loader(store: MemoryStore) -> Callable[[str], object]:
    def load(pad_id: str) -> object:
        with UnitOfWork(store) as uow:
            return uow.repository(Pad).get(pad_id)

    return load


def read_cases(workload: str, folder: Path) -> list[Case]:
    found: list[Case] = []
    for key, providers in SETUPS.items():
        timer: Timer
        if workload == "sqlite read":
            sqlite = SQLiteStore(folder / f"{len(found)}.db")
            timer = sync_timer(sqlite.read_stream, Pad.stream_for(filled(sqlite)))
        else:
            store = MemoryStore()
            pad_id = filled(store)
            if workload == "load":
                timer = sync_timer(loader(store), pad_id)
            else:
                timer = sync_timer(store.read_stream, Pad.stream_for(pad_id))

        def timed(n: int, timer: Timer = timer, providers: Providers | None = providers) -> float:
            install(providers)
            return timer(n)

        found.append(Case(f"{workload}:{key}", f"{workload}, {key}", timed, "sync"))
    return found


def cases(workload: str) -> list[Case]:
    found: list[Case] = []
    for key, providers in SETUPS.items():
        each = bus(MemoryStore())
        if providers is not None:
            instrument(each, tracer_provider=providers[0], meter_provider=providers[1])
        message: Command = Ask(7) if workload == "command" else Note(7)
        timer = sync_timer(each.handle, message)

        def timed(n: int, timer: Timer = timer, providers: Providers | None = providers) -> float:
            install(providers)
            return timer(n)

        found.append(Case(f"{workload}:{key}", f"{workload}, {key}", timed, "sync"))
    return found


def seam_ns(enter: Callable[[], None]) -> float:
    uninstrument()
    number = 200_000
    return min(timeit.repeat(enter, number=number, repeat=5)) / number * 1e9


def publishing() -> None:
    with hooks.publishing() as publishing:
        publishing.headers()


def reading() -> None:
    with hooks.reading("memory", "read_stream", "Pad-1") as reading:
        reading.read(EVENTS)


def report(workload: str, unit: str, results: list[Result]) -> None:
    base = results[0].rate
    print(f"{workload}: {unit}/s (ratio to uninstrumented)")
    for result in results:
        print(
            f"  {result.case.name:<45} {result.rate:>12,.0f}  {result.rate / base:5.2f}x"
            f"  (spread {result.spread:.0%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.2)
    args = parser.parse_args()
    for workload in ("command", "commit"):
        report(
            workload,
            "messages",
            measure(cases(workload), repeats=args.repeats, seconds=args.seconds),
        )
    with tempfile.TemporaryDirectory() as folder:
        for workload in ("read", "load", "sqlite read"):
            found = read_cases(workload, Path(folder))
            report(workload, "reads", measure(found, repeats=args.repeats, seconds=args.seconds))
    print(f"uninstrumented seam, hooks.publishing() entered and left: {seam_ns(publishing):.0f} ns")
    print(f"uninstrumented seam, hooks.reading() entered and left: {seam_ns(reading):.0f} ns")
    uninstrument()


if __name__ == "__main__":
    main()
