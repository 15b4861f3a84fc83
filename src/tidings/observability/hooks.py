"""The seams tidings' own code calls to be observed, each one check when nothing is instrumented.

The bus, the unit of work and the projection runner call these functions at
the places worth a span or a count: an append, a projection batch, a retry, a
dead letter. Until `tidings.observability.instrument` sets an `Observer`
they hand back shared do-nothing objects, so an application without the
`otel` extra (or that never instruments) pays a global lookup per call and
imports nothing of OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from tidings.store.records import RecordedEvent

__all__ = [
    "Observer",
    "Publishing",
    "dead_lettered",
    "install",
    "processing_batch",
    "publishing",
    "retried",
    "saga_step",
]


class Publishing(Protocol):
    """One commit of a unit of work being observed: the headers its events carry."""

    def headers(self) -> dict[str, str]:
        """A fresh dict of the headers for one event appended (the trace context)."""
        ...

    def appended(self, stream: str, count: int) -> None:
        """`count` events were appended to `stream`."""
        ...


class Observer(Protocol):
    """What watches tidings at work: `tidings.observability` installs one."""

    def publishing(self) -> AbstractContextManager[Publishing]: ...

    def processing_batch(
        self, projection: str, records: Sequence[RecordedEvent]
    ) -> AbstractContextManager[object]: ...

    def saga_step(self, saga: str, step: str, stream: str) -> AbstractContextManager[object]: ...

    def retried(self, handler: str, attempt: int, error: BaseException) -> None: ...

    def dead_lettered(self, handler: str, error: BaseException, parked: bool) -> None: ...


class _Unobserved:
    """The commit of a unit of work nobody observes: no headers, nothing counted."""

    __slots__ = ()

    def headers(self) -> dict[str, str]:
        return {}

    def appended(self, stream: str, count: int) -> None:
        pass


_UNOBSERVED: AbstractContextManager[Publishing] = nullcontext(_Unobserved())
_NOTHING: AbstractContextManager[object] = nullcontext(None)
_observer: Observer | None = None


def install(observer: Observer | None) -> None:
    """Observe tidings with `observer` from now on, process-wide; None stops observing."""
    global _observer
    _observer = observer


def publishing() -> AbstractContextManager[Publishing]:
    """Around a unit of work's commit: what it appends, and the headers its events carry."""
    observer = _observer
    return _UNOBSERVED if observer is None else observer.publishing()


def processing_batch(
    projection: str, records: Sequence[RecordedEvent]
) -> AbstractContextManager[object]:
    """Around a projection's (or partition's) handling of one batch of recorded events."""
    observer = _observer
    return _NOTHING if observer is None else observer.processing_batch(projection, records)


def saga_step(saga: str, step: str, stream: str) -> AbstractContextManager[object]:
    """Around one run of a saga's step (`stream` is the saga's own)."""
    observer = _observer
    return _NOTHING if observer is None else observer.saga_step(saga, step, stream)


def retried(handler: str, attempt: int, error: BaseException) -> None:
    """A handler (a bus handler's or a projection's name) failed and is tried again."""
    observer = _observer
    if observer is not None:
        observer.retried(handler, attempt, error)


def dead_lettered(handler: str, error: BaseException, parked: bool = False) -> None:
    """A handler gave up on a message: it is dead-lettered (and its projection `parked`)."""
    observer = _observer
    if observer is not None:
        observer.dead_lettered(handler, error, parked)
