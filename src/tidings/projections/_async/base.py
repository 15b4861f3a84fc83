"""What every part of a projection runner shares: settings, checkpoints, signals, small steps."""

from __future__ import annotations

import inspect
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Never, TypeVar, cast

import anyio  # sync: import threading

from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.messages import Envelope, Event
from tidings.projections import blocking
from tidings.projections._async.checkpoints import checkpoints_of
from tidings.projections._async.letters import AsyncProjectionLetters
from tidings.projections.partitions import SEPARATOR, LeaseLost, Partition, partitions
from tidings.projections.projection import EventHandler, Projection, ProjectionState
from tidings.projections.tables import ProjectionRow
from tidings.store._async.base import (
    AsyncReadModelStore,
    AsyncReadModelTransaction,
    AsyncStoreTransaction,
)
from tidings.subscriptions.signal import CommitSignal

__all__ = [
    "BLOCKING",
    "PROCESSING",
    "AsyncRunnerBase",
    "Fenced",
    "GiveBack",
    "Progress",
    "awaited",
    "call",
    "called",
]

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Called as `progress(position, head)` while a projection rebuilds."""

PROCESSING = (ProjectionState.RUNNING, ProjectionState.REBUILDING)

BLOCKING = False  # sync: BLOCKING = True
"""Whether this runner calls handlers without awaiting: then it refuses async ones."""

Slots = anyio.Semaphore  # sync: Slots = threading.Semaphore


class Fenced(Exception):
    """The checkpoint moved under this runner (lease lost, paused, rebuilt): start over."""


class GiveBack(Fenced):
    """This runner holds more partitions than its share: give this one back to the others."""


class AsyncRunnerBase:
    """A runner's projections, settings, checkpoints and dead letters, and how its parts signal."""

    def __init__(
        self,
        store: AsyncReadModelStore,
        projections: Iterable[Projection[AsyncReadModelTransaction]],
        *,
        codec: Codec | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease: float = 10.0,
        retry_waits: bool = True,
        held_back_warning: float = 60.0,
        concurrency: int | None = None,
    ) -> None:
        self.store = store
        self.projections: dict[str, Projection[AsyncReadModelTransaction]] = {}
        for projection in projections:
            self._check(projection)
            if projection.name in self.projections:
                raise ConfigurationError(f"two projections are named {projection.name!r}")
            self.projections[projection.name] = projection
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if poll_interval <= 0 or lease <= 0 or held_back_warning <= 0:
            raise ValueError("poll_interval, lease and held_back_warning must be positive")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        # Every checkpoint row this runner may work on: a projection's own, or its partitions'.
        self._partitions: dict[str, Partition] = {
            part.key: part
            for projection in self.projections.values()
            for part in partitions(projection.name, projection.partitions)
        }
        self.concurrency = concurrency
        self.codec = codec if codec is not None else Codec()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.retry_waits = retry_waits
        self.held_back_warning = held_back_warning
        self.checkpoints = checkpoints_of(store)
        self._letters = AsyncProjectionLetters(store, self.codec)
        self.dead_letters = self._letters.store
        # Who holds a lease, as `status()` shows it: host, process and this runner.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._commits = CommitSignal()  # the store's commits
        self._changes = CommitSignal()  # checkpoints and states changed by this runner
        self._positions: dict[str, int] = {}  # what this runner's workers have committed
        self._poked: set[str] = set()
        self._working: set[str] = set()  # projections this runner's workers run now
        self._shares: dict[str, int] = {}  # partitions each projection's runners hold at most
        # While running, the semaphore of `concurrency` batches.
        self._slots: Slots | None = None
        self._stopped = True  # whether the workers are to stop, or are not running
        self._stop_asked = False  # `stop` was called: final, whenever it came

    @asynccontextmanager
    async def _batch_slot(self) -> AsyncIterator[None]:
        """Hold one of the `concurrency` batches this runner processes at a time."""
        if self._slots is None:
            yield
            return
        async with self._slots:
            yield

    def _new_slots(self) -> None:
        if (n := self.concurrency) is not None:
            self._slots = anyio.Semaphore(n)  # sync: self._slots = threading.Semaphore(n)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """A transaction to look at checkpoints in, writing nothing.

        On a store with read transactions (SQLite) a read-only snapshot: it
        takes no write lock, so it never waits for a writer of any process,
        whatever that writer holds, nor makes one wait. Elsewhere readers never
        wait anyway, and it is a store transaction. A projections table still
        missing is made first, in a writing transaction (once).
        """
        opener = getattr(self.store, "read_transaction", None)
        if opener is not None:
            async with opener() as tx:
                if await self.checkpoints.ready(tx):
                    yield tx
                    return
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            yield tx

    @contextmanager
    def _hearing_commits(self) -> Iterator[None]:
        """Within the block, every commit the store hears wakes `_wait_changes`.

        A SQLite store hears other processes' commits too (`PRAGMA
        data_version`), so a wait for a runner elsewhere ends as soon as its
        checkpoint moves instead of at the next poll. Stores without commit
        listeners are polled.
        """
        add_listener = getattr(self.store, "add_commit_listener", None)
        if add_listener is None:
            yield
            return
        remove = add_listener(self._changes.announce)
        try:
            yield
        finally:
            remove()

    async def _load(self, name: str) -> ProjectionRow:
        async with self._reading() as tx:
            row = await self.checkpoints.load(tx, name)
        if row is None:
            raise Fenced
        return row

    async def _claim(self, name: str) -> bool:
        async with self.store.transaction() as tx:
            claimed = await self.checkpoints.claim(tx, name, self.owner, self.lease)
        return claimed

    async def _set_state(self, name: str, state: ProjectionState) -> None:
        count = self._partitions[name].count if name in self._partitions else 1
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            await self.checkpoints.add(tx, name, partitions=count)
            await self.checkpoints.set_state(tx, name, state)
            await self._letters.forget(tx, name, parked_only=True)
        self._poke(name)

    def _poke(self, name: str) -> None:
        """Make this runner's worker of `name` look at its row again, now."""
        self._poked.add(name)
        self._commits.announce()
        self._changes.announce()

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until `stop`."""
        deadline = time.monotonic() + seconds
        while not self._stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._wait_changes(self._changes.count, remaining)

    async def _wait_changes(self, seen: int, seconds: float) -> None:
        await self._changes.wait_async(seen, seconds)  # sync: self._changes.wait(seen, seconds)

    def _get(self, name: str) -> Projection[AsyncReadModelTransaction]:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise LookupError(f"no projection named {name!r} (known: {known})") from None

    def _keys(self, name: str) -> list[str]:
        """The rows `name` stands for: a projection's partitions, or one partition's row."""
        if name in self._partitions and name not in self.projections:
            return [name]
        projection = self._get(name)
        return [part.key for part in partitions(name, projection.partitions)]

    def _partition(self, key: str) -> tuple[Projection[AsyncReadModelTransaction], Partition]:
        """The projection and partition of row `key` (a projection's name, or `<name>#<i>`)."""
        found = self._partitions.get(key)
        if found is None:
            projection = self._get(key.partition(SEPARATOR)[0])
            raise LookupError(f"projection {projection.name!r} has no partition {key!r}")
        return self.projections[found.projection], found

    async def _refused(self, tx: AsyncStoreTransaction, key: str, token: int) -> Exception:
        """Why a fenced write of row `key` was refused: its lease was lost, or it moved."""
        row = await self.checkpoints.load(tx, key)
        if row is None or row.owner != self.owner or row.token != token:
            return LeaseLost(key, self.owner, token)
        return Fenced()

    @staticmethod
    def _check(projection: Projection[Never]) -> None:
        name = getattr(projection, "name", None)
        if not isinstance(name, str) or not name or "+" in name or SEPARATOR in name:
            raise ConfigurationError(
                f"{type(projection).__qualname__}: a projection needs a name, "
                f"without '+' or {SEPARATOR!r}"
            )
        count = getattr(projection, "partitions", 1)
        if not isinstance(count, int) or count < 1:
            raise ConfigurationError(
                f"projection {name!r}: partitions must be a whole number of at least 1"
            )
        if BLOCKING:
            blocking.refuse_async(projection)


async def called(
    handler: EventHandler[AsyncReadModelTransaction],
    envelope: Envelope[Event],
    tx: AsyncReadModelTransaction | None,
) -> None:
    """Call `handler` in `tx`; None for a projection that is not `transactional`.

    The handlers of such a projection take `tx: None` (see `handles`): a
    `Projection[AsyncReadModelTransaction]` does not say whether it is one,
    so the None is given on its word.
    """
    takes_none = cast(EventHandler[AsyncReadModelTransaction | None], handler)
    await awaited(takes_none(envelope.message, envelope, tx), handler)


async def call(fn: Callable[[T], object], tx: T) -> None:
    await awaited(fn(tx), fn)


async def awaited(result: object, fn: object) -> None:
    """Await what `fn` returned, if it is awaitable; a blocking runner refuses it instead."""
    if inspect.isawaitable(result):
        await result  # sync: raise blocking.refused(result, fn)
