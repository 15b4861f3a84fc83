"""Units of work of one process that load the same aggregate take turns.

Two blocks that change one aggregate at once both load the same version; the
second to commit conflicts, and the bus retries it from the start. On one hot
aggregate most of that work is thrown away, and requests run out of retries.
Waiting in the process is cheaper: a block that loads an aggregate another
block of this process holds waits until that block ends, then loads what it
committed.

Waiting is bounded: after `wait` seconds a block goes on without its turn, as
it would with no turns at all, so two blocks that load two aggregates in
opposite orders delay each other but never deadlock. A block never waits for
one the same thread (or task) holds, as a nested unit of work does. Turns are
an optimisation, not the guard: optimistic concurrency still decides what
commits, against other processes too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable

import anyio  # sync:

__all__ = ["AsyncAggregateTurns", "AsyncHeldTurns", "turns_of"]

# A lock any task may release, as a unit of work may end in another task than it began.
Lock = anyio.Semaphore  # sync: Lock = threading.Lock


async def _acquire(lock: Lock, wait: float) -> bool:
    """Whether `lock` was acquired within `wait` seconds."""
    with anyio.move_on_after(wait):  # sync: return lock.acquire(timeout=wait)
        await lock.acquire()  # sync:
        return True  # sync:
    return False  # sync:


def _current() -> int:
    """Who is running: the task (the thread, in the blocking twin)."""
    return anyio.get_current_task().id  # sync: return threading.get_ident()


class _Turn:
    """One aggregate's lock, its holder, and how many blocks hold or await it."""

    def __init__(self) -> None:
        self.lock = Lock(1)  # sync: self.lock = Lock()
        self.holder: int | None = None
        self.users = 0


class AsyncAggregateTurns:
    """The turns of every aggregate loaded through one store in this process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._turns: dict[Hashable, _Turn] = {}

    def block(self, wait: float) -> AsyncHeldTurns:
        """The turns one unit-of-work block takes, each awaited up to `wait` seconds."""
        return AsyncHeldTurns(self, wait)

    async def _take(self, key: Hashable, holder: int, wait: float) -> bool:
        with self._guard:
            turn = self._turns.get(key)
            if turn is None:
                turn = self._turns[key] = _Turn()
            if turn.holder == holder:
                return False  # an enclosing block of this thread or task has it
            turn.users += 1
        if await _acquire(turn.lock, wait):
            turn.holder = holder
            return True
        self._leave(key, turn)
        return False

    def _give_back(self, key: Hashable) -> None:
        turn = self._turns[key]
        turn.holder = None
        turn.lock.release()
        self._leave(key, turn)

    def _leave(self, key: Hashable, turn: _Turn) -> None:
        with self._guard:
            turn.users -= 1
            if not turn.users:
                del self._turns[key]


class AsyncHeldTurns:
    """The turns one open unit-of-work block holds; `release` gives them all back."""

    def __init__(self, turns: AsyncAggregateTurns, wait: float) -> None:
        self._turns = turns
        self._wait = wait
        self._held: list[Hashable] = []

    async def take(self, key: Hashable) -> None:
        """Wait until no other block of this process holds `key`, then hold it."""
        if key in self._held:
            return
        if await self._turns._take(key, _current(), self._wait):
            self._held.append(key)

    def release(self) -> None:
        held, self._held = self._held, []
        for key in reversed(held):
            self._turns._give_back(key)


_by_store: weakref.WeakKeyDictionary[object, AsyncAggregateTurns] = weakref.WeakKeyDictionary()
_by_store_guard = threading.Lock()


def turns_of(store: object) -> AsyncAggregateTurns:
    """The turns shared by every unit of work of this process on `store`."""
    with _by_store_guard:
        turns = _by_store.get(store)
        if turns is None:
            turns = _by_store[store] = AsyncAggregateTurns()
        return turns
