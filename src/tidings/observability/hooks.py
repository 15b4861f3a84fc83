"""The seams tidings' own code calls to be observed, each one check when nothing is instrumented.

The bus, the unit of work, the stores, the projection runner and the
transports call these functions at the places worth a span or a count: an
append, a read of the log, an aggregate loaded, a projection batch, a
message relayed to a broker or received from one, a retry, a dead letter.
Until `tidings.observability.instrument` sets an `Observer` they hand back
shared do-nothing objects, so an application without the `otel` extra (or
that never instruments) pays a global lookup per call and imports nothing of
OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Protocol

from tidings.store.records import RecordedEvent

if TYPE_CHECKING:  # the transports import these seams
    from tidings.messages import Envelope, Event
    from tidings.transports.binding import BrokerMessage

__all__ = [
    "ALL",
    "Loading",
    "Observer",
    "Publishing",
    "Reading",
    "dead_lettered",
    "install",
    "loading",
    "observer",
    "processing_batch",
    "publishing",
    "reading",
    "receiving",
    "relaying",
    "retried",
    "saga_step",
]


ALL = "$all"
"""The collection a read of the whole log names (`read_all`)."""


class Publishing(Protocol):
    """One commit of a unit of work being observed: the headers its events carry."""

    def headers(self) -> dict[str, str]:
        """A fresh dict of the headers for one event appended (the trace context)."""
        ...

    def appended(self, stream: str, count: int) -> None:
        """`count` events were appended to `stream`."""
        ...


class Reading(Protocol):
    """One read of a store being observed: what it returned."""

    def read(self, count: int) -> None:
        """The read returned `count` events."""
        ...


class Loading(Protocol):
    """One aggregate being loaded by a repository: where it ended."""

    def loaded(self, version: int | None, replayed: int) -> None:
        """Loaded at `version` (None: no such aggregate), replaying `replayed` events."""
        ...


class Observer(Protocol):
    """What watches tidings at work: `tidings.observability` installs one."""

    def publishing(self) -> AbstractContextManager[Publishing]: ...

    def reading(
        self, system: str, operation: str, collection: str
    ) -> AbstractContextManager[Reading]: ...

    def loading(self, aggregate: str, stream: str) -> AbstractContextManager[Loading]: ...

    def relaying(
        self, publisher: object, message: BrokerMessage
    ) -> AbstractContextManager[BrokerMessage]: ...

    def receiving(
        self, receiver: object, group: str, envelope: Envelope[Event]
    ) -> AbstractContextManager[object]: ...

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


class _Unread:
    """A read nobody observes: nothing recorded."""

    __slots__ = ()

    def read(self, count: int) -> None:
        pass

    def loaded(self, version: int | None, replayed: int) -> None:
        pass


_UNOBSERVED: AbstractContextManager[Publishing] = nullcontext(_Unobserved())
_UNREAD: AbstractContextManager[_Unread] = nullcontext(_Unread())
_NOTHING: AbstractContextManager[object] = nullcontext(None)
observer: Observer | None = None
"""What observes tidings; None until `instrument`. A seam costs more than a read of the memory
store, so that store checks this first and calls its seams only when something observes."""


def install(watcher: Observer | None) -> None:
    """Observe tidings with `watcher` from now on, process-wide; None stops observing."""
    global observer
    observer = watcher


def publishing() -> AbstractContextManager[Publishing]:
    """Around a unit of work's commit: what it appends, and the headers its events carry."""
    watcher = observer
    return _UNOBSERVED if watcher is None else watcher.publishing()


def reading(system: str, operation: str, collection: str) -> AbstractContextManager[Reading]:
    """Around one read of a store: `operation` (`read_stream`, `read_all`) of `collection`.

    `system` is the database (`memory`, `sqlite`, `postgresql`), `collection`
    the stream read, or `$all`.
    """
    watcher = observer
    return _UNREAD if watcher is None else watcher.reading(system, operation, collection)


def loading(aggregate: str, stream: str) -> AbstractContextManager[Loading]:
    """Around a repository's loading of an aggregate of type `aggregate` from `stream`."""
    watcher = observer
    return _UNREAD if watcher is None else watcher.loading(aggregate, stream)


def relaying(publisher: object, message: BrokerMessage) -> AbstractContextManager[BrokerMessage]:
    """Around the relay's publication of `message` by `publisher`: gives the message to send.

    Observed, that is `message` with the trace context of its publication in
    its headers, for the consumer to continue; otherwise `message` itself.
    """
    watcher = observer
    return nullcontext(message) if watcher is None else watcher.relaying(publisher, message)


def receiving(
    receiver: object, group: str, envelope: Envelope[Event]
) -> AbstractContextManager[object]:
    """Around a consumer's handing of `envelope`, from `receiver` for `group`, to its bus."""
    watcher = observer
    return _NOTHING if watcher is None else watcher.receiving(receiver, group, envelope)


def processing_batch(
    projection: str, records: Sequence[RecordedEvent]
) -> AbstractContextManager[object]:
    """Around a projection's (or partition's) handling of one batch of recorded events."""
    watcher = observer
    return _NOTHING if watcher is None else watcher.processing_batch(projection, records)


def saga_step(saga: str, step: str, stream: str) -> AbstractContextManager[object]:
    """Around one run of a saga's step (`stream` is the saga's own)."""
    watcher = observer
    return _NOTHING if watcher is None else watcher.saga_step(saga, step, stream)


def retried(handler: str, attempt: int, error: BaseException) -> None:
    """A handler (a bus handler's or a projection's name) failed and is tried again."""
    watcher = observer
    if watcher is not None:
        watcher.retried(handler, attempt, error)


def dead_lettered(handler: str, error: BaseException, parked: bool = False) -> None:
    """A handler gave up on a message: it is dead-lettered (and its projection `parked`)."""
    watcher = observer
    if watcher is not None:
        watcher.dead_lettered(handler, error, parked)
