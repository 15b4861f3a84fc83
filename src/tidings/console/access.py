"""What the pages read and act on, awaited: an async store as it is, a blocking one in a thread.

The pages are written once, against these protocols. Which kind of store a
console serves is decided once, when it is made (`blocking_access` or
`async_access`): an async store, its runner, letters and bus are awaited as
they are, on the server's event loop; a blocking store's calls each run in a
worker thread (about 0.1 ms a hop), so the loop is never blocked either way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar
from uuid import UUID

import anyio.to_thread

from tidings._async.bus import AsyncMessageBus
from tidings._sync.bus import MessageBus
from tidings.dead_letters import DeadLetter, DeadLetters
from tidings.projections import (
    AsyncProjectionRunner,
    Progress,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
)
from tidings.store import (
    AsyncEventStore,
    AsyncReadModelTransaction,
    EventReader,
    EventStore,
    ReadModelTransaction,
    RecordedEvent,
    StreamInfo,
)

__all__ = [
    "Access",
    "AsyncLetterStore",
    "LetterStore",
    "Log",
    "Runner",
    "async_access",
    "blocking_access",
]

T = TypeVar("T")


class Log(Protocol):
    """The reads of the log the pages make: an `AsyncEventReader` is one."""

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]: ...

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]: ...

    async def head_position(self) -> int: ...

    async def stream_version(self, stream: str) -> int | None: ...

    async def list_streams(
        self, category: str | None = None, *, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]: ...


class LetterStore(Protocol):
    """Blocking dead letters the console lists and acts on: `SQLDeadLetters` or `DeadLetters`."""

    def list(
        self, *, handler: str | None = None, after: UUID | None = None, limit: int | None = None
    ) -> list[DeadLetter]: ...

    def get(self, letter_id: UUID) -> DeadLetter: ...

    def remove(self, letter_id: UUID) -> DeadLetter: ...

    def count(self, *, handler: str | None = None) -> int: ...


class AsyncLetterStore(Protocol):
    """Async dead letters the console lists and acts on: `AsyncSQLDeadLetters`."""

    async def list(
        self, *, handler: str | None = None, after: UUID | None = None, limit: int | None = None
    ) -> list[DeadLetter]: ...

    async def get(self, letter_id: UUID) -> DeadLetter: ...

    async def remove(self, letter_id: UUID) -> DeadLetter: ...

    async def count(self, *, handler: str | None = None) -> int: ...


class Runner(Protocol):
    """The projection actions the pages take: an `AsyncProjectionRunner` is one."""

    @property
    def projections(self) -> Mapping[str, object]:
        """The application's projections by name: the pages need their names alone."""
        ...

    async def status(self) -> list[ProjectionStatus]: ...

    async def pause(self, name: str) -> None: ...

    async def resume(self, name: str) -> None: ...

    async def skip(self, name: str) -> DeadLetter | None: ...

    async def retry_dead_letter(self, letter_id: UUID) -> bool: ...

    async def rebuild(self, name: str, progress: Progress | None = None) -> None: ...


class Retrier(Protocol):
    """What a bus lends the console: retrying its handlers' dead letters."""

    async def retry_dead_letter(self, letter_id: UUID) -> bool: ...


@dataclass(frozen=True, slots=True)
class Access:
    """The log, letters, projections and bus of one console, each awaited the same way."""

    log: Log
    letters: AsyncLetterStore
    runner: Runner
    bus: Retrier | None
    rebuilder: Callable[[], Runner]
    """A runner of its own for each rebuild, which holds the projection's lease while it replays."""


async def _in_thread(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


class _ThreadedLog:
    def __init__(self, store: EventReader) -> None:
        self._store = store

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        read = partial(
            self._store.read_all, after=after, limit=limit, categories=categories, types=types
        )
        return await _in_thread(read)

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        read = partial(
            self._store.read_stream,
            stream,
            from_version=from_version,
            backwards=backwards,
            limit=limit,
        )
        return await _in_thread(read)

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        return await _in_thread(partial(self._store.read_correlated, correlation_id, limit=limit))

    async def head_position(self) -> int:
        return await _in_thread(self._store.head_position)

    async def stream_version(self, stream: str) -> int | None:
        return await _in_thread(partial(self._store.stream_version, stream))

    async def list_streams(
        self, category: str | None = None, *, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        return await _in_thread(
            partial(self._store.list_streams, category, after=after, limit=limit)
        )


class _ThreadedLetters:
    def __init__(self, letters: LetterStore) -> None:
        self._letters = letters

    async def list(
        self, *, handler: str | None = None, after: UUID | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        return await _in_thread(
            partial(self._letters.list, handler=handler, after=after, limit=limit)
        )

    async def get(self, letter_id: UUID) -> DeadLetter:
        return await _in_thread(partial(self._letters.get, letter_id))

    async def remove(self, letter_id: UUID) -> DeadLetter:
        return await _in_thread(partial(self._letters.remove, letter_id))

    async def count(self, *, handler: str | None = None) -> int:
        return await _in_thread(partial(self._letters.count, handler=handler))


class _InlineLetters:
    """Letters kept in memory (beside an async memory store): no I/O, so called on the loop."""

    def __init__(self, letters: DeadLetters) -> None:
        self._letters = letters

    async def list(
        self, *, handler: str | None = None, after: UUID | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        return self._letters.list(handler=handler, after=after, limit=limit)

    async def get(self, letter_id: UUID) -> DeadLetter:
        return self._letters.get(letter_id)

    async def remove(self, letter_id: UUID) -> DeadLetter:
        return self._letters.remove(letter_id)

    async def count(self, *, handler: str | None = None) -> int:
        return self._letters.count(handler=handler)


class _ThreadedRunner:
    def __init__(self, runner: ProjectionRunner) -> None:
        self._runner = runner

    @property
    def projections(self) -> Mapping[str, object]:
        return self._runner.projections

    async def status(self) -> list[ProjectionStatus]:
        return await _in_thread(self._runner.status)

    async def pause(self, name: str) -> None:
        await _in_thread(partial(self._runner.pause, name))

    async def resume(self, name: str) -> None:
        await _in_thread(partial(self._runner.resume, name))

    async def skip(self, name: str) -> DeadLetter | None:
        return await _in_thread(partial(self._runner.skip, name))

    async def retry_dead_letter(self, letter_id: UUID) -> bool:
        return await _in_thread(partial(self._runner.retry_dead_letter, letter_id))

    async def rebuild(self, name: str, progress: Progress | None = None) -> None:
        await _in_thread(partial(self._runner.rebuild, name, progress))


class _ThreadedBus:
    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    async def retry_dead_letter(self, letter_id: UUID) -> bool:
        return await _in_thread(partial(self._bus.retry_dead_letter, letter_id))


_POLL = 0.2


def blocking_access(
    store: EventStore,
    projections: Sequence[Projection[ReadModelTransaction]],
    bus: MessageBus | None,
    dead_letters: LetterStore | None,
) -> Access:
    """A blocking store's console: every call in a worker thread."""

    def rebuilder() -> Runner:
        return _ThreadedRunner(ProjectionRunner(store, projections, poll_interval=_POLL))

    runner = ProjectionRunner(store, projections, poll_interval=_POLL)
    letters: LetterStore = runner.dead_letters if dead_letters is None else dead_letters
    return Access(
        log=_ThreadedLog(store),
        letters=_ThreadedLetters(letters),
        runner=_ThreadedRunner(runner),
        bus=None if bus is None else _ThreadedBus(bus),
        rebuilder=rebuilder,
    )


def async_access(
    store: AsyncEventStore,
    projections: Sequence[Projection[AsyncReadModelTransaction]],
    bus: AsyncMessageBus | None,
    dead_letters: AsyncLetterStore | None,
) -> Access:
    """An async store's console: every call awaited on the server's loop, no thread hop."""

    def rebuilder() -> Runner:
        return AsyncProjectionRunner(store, projections, poll_interval=_POLL)

    runner = AsyncProjectionRunner(store, projections, poll_interval=_POLL)
    letters: AsyncLetterStore
    if dead_letters is not None:
        letters = dead_letters
    elif isinstance(runner.dead_letters, DeadLetters):
        letters = _InlineLetters(runner.dead_letters)
    else:
        letters = runner.dead_letters
    return Access(log=store, letters=letters, runner=runner, bus=bus, rebuilder=rebuilder)
