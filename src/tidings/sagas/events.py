"""The events a saga or process instance records in its own stream: its state, event-sourced."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from tidings.messages import Event

__all__ = [
    "ProcessReacted",
    "SagaCompensated",
    "SagaCompleted",
    "SagaParked",
    "SagaResumed",
    "SagaStarted",
    "StepCompensated",
    "StepCompleted",
    "StepFailed",
    "StepStarted",
]


@dataclass(frozen=True)
class SagaStarted(Event, type_name="tidings.saga.Started"):
    saga: str
    data: dict[str, Any]


@dataclass(frozen=True)
class StepStarted(Event, type_name="tidings.saga.StepStarted"):
    """Recorded before a step with a timeout runs, so its deadline outlives a restart."""

    step: str
    deadline: datetime


@dataclass(frozen=True)
class StepCompleted(Event, type_name="tidings.saga.StepCompleted"):
    step: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepFailed(Event, type_name="tidings.saga.StepFailed"):
    step: str
    error: str
    timed_out: bool = False


@dataclass(frozen=True)
class StepCompensated(Event, type_name="tidings.saga.StepCompensated"):
    step: str


@dataclass(frozen=True)
class SagaCompleted(Event, type_name="tidings.saga.Completed"):
    pass


@dataclass(frozen=True)
class SagaCompensated(Event, type_name="tidings.saga.Compensated"):
    reason: str


@dataclass(frozen=True)
class SagaParked(Event, type_name="tidings.saga.Parked"):
    """The saga cannot go on by itself (`error` says why): it waits to be resumed."""

    step: str
    error: str
    attempts: int


@dataclass(frozen=True)
class SagaResumed(Event, type_name="tidings.saga.Resumed"):
    """Someone resumed a parked saga: it carries on where it was parked."""


@dataclass(frozen=True)
class ProcessReacted(Event, type_name="tidings.process.Reacted"):
    """A process manager handled `event_id`: its data after, the commands sent, if it ended."""

    event_id: UUID
    event_type: str
    data: dict[str, Any]
    sent: list[str] = field(default_factory=list)
    ended: bool = False
