"""The keyword options tests give the projection runners, typed so a `**FAST` splat is checked."""

from __future__ import annotations

from typing import TypedDict

__all__ = ["RunnerOptions"]


class RunnerOptions(TypedDict, total=False):
    """Options of `ProjectionRunner`/`AsyncProjectionRunner` tests shorten to run fast."""

    poll_interval: float
    lease: float
    retry_waits: bool
