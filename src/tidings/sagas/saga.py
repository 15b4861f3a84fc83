"""Orchestrated sagas: named steps run in order, each undone by its compensation on failure.

A saga's state lives in its own stream (`<name>-<saga id>`) as the events of
`tidings.sagas.events`; `SagaState.replay` folds them and `next_move` says
what to do next. Nothing here does I/O: `AsyncSagaRunner` runs the moves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.categories import claim_category
from tidings.errors import ConfigurationError, TidingsError
from tidings.messages import Event
from tidings.sagas.events import (
    SagaCompensated,
    SagaCompleted,
    SagaParked,
    SagaResumed,
    SagaStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepStarted,
)

__all__ = [
    "Compensate",
    "Finish",
    "Move",
    "RunStep",
    "Saga",
    "SagaFailure",
    "SagaRecoveryFailed",
    "SagaState",
    "SagaStatus",
    "Step",
    "StepAction",
    "StepContext",
    "StepTimedOut",
    "letter_handler",
    "next_move",
    "saga_of",
]


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step's action or compensation is given.

    `idempotency_key` is the same every time this step (or its compensation)
    of this saga runs, across retries and restarts: pass it to the service
    called, so that a repeated call after a crash takes effect once.
    `action_key` is the key of the step's action, which a compensation may
    need to find what the action did when its result was never recorded
    (the step timed out).
    """

    saga: str
    saga_id: str
    step: str
    data: Mapping[str, Any]
    idempotency_key: str
    action_key: str


StepAction = Callable[[StepContext], Any]
"""A step's action, sync or async: it may return a dict merged into the saga's data."""


class StepTimedOut(TidingsError, TimeoutError):
    """A step did not finish before its deadline; the saga compensates."""

    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(f"step {step!r} did not finish before its deadline")


@dataclass(frozen=True, slots=True)
class SagaFailure:
    """A saga that recovery could not bring to an end, and why."""

    saga: str
    saga_id: str
    error: str


class SagaRecoveryFailed(TidingsError, RuntimeError):
    """Some sagas could not be recovered; every other one was.

    `failures` names each saga that failed (parked, or not runnable at all),
    `recovered` holds the final states of the others.
    """

    def __init__(self, failures: list[SagaFailure], recovered: list[SagaState]) -> None:
        self.failures = failures
        self.recovered = recovered
        named = ", ".join(f"{f.saga}-{f.saga_id}" for f in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        super().__init__(
            f"{len(failures)} saga(s) could not be recovered ({len(recovered)} were): "
            f"{named}{more}; {failures[0].error}"
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One step: `action`, and the `compensation` that undoes it if a later step fails.

    With `timeout` (seconds) the step's deadline is recorded before it runs;
    missing it fails the step, and as its effect is then unknown, its own
    compensation runs too (idempotent services make undoing a call that never
    landed harmless).
    """

    name: str
    action: StepAction
    compensation: StepAction | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigurationError(f"a step name is not empty and has no '/': {self.name!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"step {self.name!r}: timeout must be positive")


@dataclass(frozen=True, slots=True)
class Saga:
    """A saga's definition: its name (the category of its streams) and its steps, in order."""

    name: str
    steps: tuple[Step, ...]

    def __init__(self, name: str, steps: Iterable[Step]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", tuple(steps))
        if not name or "-" in name:
            raise ConfigurationError(
                f"a saga name is a stream category: not empty, no dash, got {name!r}"
            )
        names = [step.name for step in self.steps]
        if not names:
            raise ConfigurationError(f"saga {name!r} has no steps")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"saga {name!r} has two steps of one name: {names}")
        claim_category(name, "saga", repr(name))

    def stream(self, saga_id: str) -> str:
        return f"{self.name}-{saga_id}"

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise ConfigurationError(f"saga {self.name!r} has no step {name!r} (stored in its log)")


class SagaStatus(enum.StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    PARKED = "parked"
    """Stopped until resumed: it could not go on by itself (a compensation kept failing)."""
    COMPLETED = "completed"
    COMPENSATED = "compensated"


@dataclass(slots=True)
class SagaState:
    """A saga instance as its stream leaves it; `version` is the stream's."""

    saga: str
    saga_id: str
    data: dict[str, Any] = field(default_factory=dict)
    status: SagaStatus = SagaStatus.RUNNING
    completed: list[str] = field(default_factory=list)
    to_compensate: list[str] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    deadlines: dict[str, datetime] = field(default_factory=dict)
    error: str | None = None
    parked_from: SagaStatus | None = None
    """While parked, the status it resumes in."""
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)

    @staticmethod
    def replay(saga: str, saga_id: str, events: Iterable[Event]) -> SagaState:
        state = SagaState(saga, saga_id)
        for event in events:
            state.apply(event)
        return state

    def apply(self, event: Event) -> None:
        self.version += 1
        if isinstance(event, SagaStarted):
            self.data = dict(event.data)
        elif isinstance(event, StepStarted):
            self.deadlines[event.step] = event.deadline
        elif isinstance(event, StepCompleted):
            self.completed.append(event.step)
            self.data.update(event.result)
        elif isinstance(event, StepFailed):
            self.status = SagaStatus.COMPENSATING
            self.error = event.error
            # A step that timed out may have taken effect: undo it too.
            done = [*self.completed, event.step] if event.timed_out else self.completed
            self.to_compensate = list(reversed(done))
        elif isinstance(event, StepCompensated):
            self.compensated.append(event.step)
        elif isinstance(event, SagaParked):
            self.parked_from, self.status = self.status, SagaStatus.PARKED
            self.error = event.error
        elif isinstance(event, SagaResumed):
            if self.parked_from is not None:
                self.status, self.parked_from = self.parked_from, None
        elif isinstance(event, SagaCompleted):
            self.status = SagaStatus.COMPLETED
        elif isinstance(event, SagaCompensated):
            self.status = SagaStatus.COMPENSATED
        else:
            raise TypeError(f"a saga stream holds no {type(event).__name__} events")


@dataclass(frozen=True, slots=True)
class RunStep:
    step: Step
    deadline: datetime | None


@dataclass(frozen=True, slots=True)
class Compensate:
    step: Step


@dataclass(frozen=True, slots=True)
class Finish:
    event: SagaCompleted | SagaCompensated


Move = RunStep | Compensate | Finish | None


def next_move(saga: Saga, state: SagaState) -> Move:
    """What the saga does next from `state`; None once it has finished or while it is parked."""
    if state.finished or state.status is SagaStatus.PARKED:
        return None
    if state.status is SagaStatus.RUNNING:
        for step in saga.steps:
            if step.name not in state.completed:
                return RunStep(step, state.deadlines.get(step.name))
        return Finish(SagaCompleted())
    for name in state.to_compensate:
        if name not in state.compensated:
            step = saga.step(name)
            if step.compensation is not None:
                return Compensate(step)
    return Finish(SagaCompensated(state.error or "compensated"))


def letter_handler(saga: str) -> str:
    """The handler name of a parked saga's dead letter: `saga:<name>`."""
    return f"saga:{saga}"


def saga_of(handler: str) -> str | None:
    """The saga a dead letter's handler names, or None if it is not a saga's."""
    prefix, _, name = handler.partition(":")
    return name if prefix == "saga" and name else None


def idempotency_key(saga: Saga, saga_id: str, step: str, compensating: bool) -> str:
    """`<saga>-<id>/<step>`, with `/compensate` for the step's compensation."""
    key = f"{saga.stream(saga_id)}/{step}"
    return f"{key}/compensate" if compensating else key
