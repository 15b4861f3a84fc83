"""Sagas and process managers whose state is their own stream in the log.

- An orchestrated `Saga` runs named `Step`s in order; when one fails (or
  misses its deadline) the completed ones are compensated in reverse.
  `AsyncSagaRunner` / `SagaRunner` run, recover and resume them; one that
  cannot go on by itself is parked (`SagaStatus.PARKED`, a dead letter of
  the handler `saga:<name>`).
- A `ProcessManager` reacts to events, one instance per correlation key,
  by sending commands and scheduling timeouts; `AsyncProcesses` /
  `Processes` deliver events to it, through a projection runner for durability.
"""

from tidings.sagas._async.processes import AsyncProcesses
from tidings.sagas._async.sagas import AsyncSagaRunner
from tidings.sagas._sync.processes import Processes
from tidings.sagas._sync.sagas import SagaRunner
from tidings.sagas.events import (
    ProcessReacted,
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
from tidings.sagas.process import Process, ProcessManager, ProcessState, reacts
from tidings.sagas.saga import (
    Saga,
    SagaFailure,
    SagaRecoveryFailed,
    SagaState,
    SagaStatus,
    Step,
    StepContext,
    StepTimedOut,
    saga_of,
)

__all__ = [
    "AsyncProcesses",
    "AsyncSagaRunner",
    "Process",
    "ProcessManager",
    "ProcessReacted",
    "ProcessState",
    "Processes",
    "Saga",
    "SagaCompensated",
    "SagaCompleted",
    "SagaFailure",
    "SagaParked",
    "SagaRecoveryFailed",
    "SagaResumed",
    "SagaRunner",
    "SagaStarted",
    "SagaState",
    "SagaStatus",
    "Step",
    "StepCompensated",
    "StepCompleted",
    "StepContext",
    "StepFailed",
    "StepStarted",
    "StepTimedOut",
    "reacts",
    "saga_of",
]
