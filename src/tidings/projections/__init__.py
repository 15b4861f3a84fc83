"""Projections: read models built from the log, run with checkpoints, rebuilt, swapped, awaited."""

from tidings.projections._async.runner import AsyncProjectionRunner, Progress
from tidings.projections._sync.runner import ProjectionRunner
from tidings.projections.durable import HandlerProjection, durable_handlers
from tidings.projections.partitions import (
    Lease,
    LeaseLost,
    PartitionsChanged,
    current_lease,
    partition_of,
)
from tidings.projections.projection import (
    EventHandler,
    InlineProjectionFailed,
    OnFailure,
    PositionBeyondHead,
    Projection,
    ProjectionState,
    ProjectionStatus,
    ProjectionStopped,
    ProjectionTimeout,
    handles,
    letter_handler,
    projection_of,
)

__all__ = [
    "AsyncProjectionRunner",
    "EventHandler",
    "HandlerProjection",
    "InlineProjectionFailed",
    "Lease",
    "LeaseLost",
    "OnFailure",
    "PartitionsChanged",
    "PositionBeyondHead",
    "Progress",
    "Projection",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStatus",
    "ProjectionStopped",
    "ProjectionTimeout",
    "current_lease",
    "durable_handlers",
    "handles",
    "letter_handler",
    "partition_of",
    "projection_of",
]
