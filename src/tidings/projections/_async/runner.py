"""Running projections from the log: batches while catching up, live after, one runner each."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import anyio  # sync: from tidings.projections.threads import TaskThreads

from tidings.codec import Codec
from tidings.dead_letters import DeadLetter, UndecodedEvent
from tidings.dead_letters.letter import letter_envelope
from tidings.errors import ConfigurationError
from tidings.messages import Envelope, Event
from tidings.projections._async.checkpoints import AsyncCheckpoints
from tidings.projections._async.letters import AsyncProjectionLetters
from tidings.projections.projection import (
    EventHandler,
    OnFailure,
    Projection,
    ProjectionState,
    ProjectionStatus,
    ProjectionStopped,
    ProjectionTimeout,
    letter_handler,
    projection_of,
)
from tidings.projections.tables import ProjectionRow
from tidings.store.records import RecordedEvent
from tidings.subscriptions._async.subscription import AsyncSubscription
from tidings.subscriptions.listener import watch_commits
from tidings.subscriptions.signal import CommitSignal

# sync: from tidings.runner import run_coroutine

if TYPE_CHECKING:
    from tidings.projections._async.locks import AsyncAdvisoryLock

__all__ = ["AsyncProjectionRunner", "Progress"]

logger = logging.getLogger("tidings.projections")

Progress = Callable[[int, int], None]
"""Called as `progress(position, head)` while a projection rebuilds."""

_PROCESSING = (ProjectionState.RUNNING, ProjectionState.REBUILDING)


class _Fenced(Exception):
    """The checkpoint moved under this runner (lease lost, paused, rebuilt): start over."""


class _Rollback(Exception):
    """A handler failed: roll the batch back."""


class AsyncProjectionRunner:
    """Runs many projections over one store, each from its own checkpoint.

    While catching up, a projection handles up to `batch_size` events per
    transaction; live, it wakes on each commit (see `AsyncSubscription`).
    Each projection is run by one runner at a time across processes: a
    runner takes a lease on it (renewed every `lease / 3` seconds) and every
    checkpoint write is fenced by owner and position, so a runner whose
    lease was taken over, or whose projection was paused or rebuilt, rolls
    its batch back instead of writing twice. A runner that dies is replaced
    once its lease has run out; on PostgreSQL at once, as runners there take
    a session advisory lock per projection first, which the server frees
    when the holder's connection drops.

    A failing handler is retried by its projection's `retry` policy
    (`retry_waits=False` skips the waits), then, by `on_failure`, the
    projection is parked with its error while the others run on, or it moves
    on. Either way the event becomes a dead letter of handler
    `projection:<name>` in `dead_letters`, the store the bus uses (in the
    log's database, `SQLDeadLetters`; in memory beside a memory store),
    written in the transaction that parks the projection or moves it on. A
    parked projection's letter is marked `parked` and lasts while it is
    parked: `resume` tries the event again, `skip` drops it.
    """

    def __init__(
        self,
        store: Any,
        projections: Iterable[Projection],
        *,
        codec: Codec | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease: float = 10.0,
        retry_waits: bool = True,
    ) -> None:
        self.store = store
        self.projections: dict[str, Projection] = {}
        for projection in projections:
            self._check(projection)
            if projection.name in self.projections:
                raise ConfigurationError(f"two projections are named {projection.name!r}")
            self.projections[projection.name] = projection
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if poll_interval <= 0 or lease <= 0:
            raise ValueError("poll_interval and lease must be positive")
        self.codec = codec if codec is not None else Codec()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.retry_waits = retry_waits
        self.checkpoints = AsyncCheckpoints(store)
        self._letters = AsyncProjectionLetters(store, self.codec)
        self.dead_letters = self._letters.store
        self.owner = uuid.uuid4().hex
        self._commits = CommitSignal()  # the store's commits
        self._changes = CommitSignal()  # checkpoints and states changed by this runner
        self._positions: dict[str, int] = {}  # what this runner's workers have committed
        self._poked: set[str] = set()
        self._working: set[str] = set()  # projections this runner's workers run now
        self._stopped = True
        self._prepared = False

    # Running.

    async def prepare(self) -> None:
        """Create the projections table, each projection's row and read model (`setup`)."""
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            for name, projection in self.projections.items():
                await self.checkpoints.add(tx, name)
                await _call(projection.setup, tx)
        self._prepared = True

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AsyncProjectionRunner]:
        """Run every projection in the background until the block ends."""
        await self.prepare()
        self._stopped = False
        stop_watching = watch_commits(self.store, self._commits)
        try:
            async with anyio.create_task_group() as tasks:  # sync: with TaskThreads() as tasks:
                for name in self.projections:
                    tasks.start_soon(self._work, name)
                try:
                    yield self
                finally:
                    self.stop()
        finally:
            stop_watching()

    async def run(self) -> None:
        """Run every projection until `stop` is called."""
        async with self.running():
            while not self._stopped:
                await self._wait_changes(self._changes.count, 1.0)

    def stop(self) -> None:
        """Ask the workers to finish their batch and give their leases back."""
        self._stopped = True
        self._commits.announce()
        self._changes.announce()

    # Control: these work whether or not this runner is running, and on other processes' runners.

    async def status(self) -> list[ProjectionStatus]:
        """Position, head, lag, state and error of each projection, from the database."""
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            rows = {row.name: row for row in await self.checkpoints.load_all(tx)}
            head = await self.checkpoints.head(tx)
            found: list[ProjectionStatus] = []
            for name, projection in self.projections.items():
                row = rows.get(name) or ProjectionRow(name, 0, "running", None, None, None, None)
                lag = await self.checkpoints.pending(
                    tx, row.position, projection.categories, projection.event_types()
                )
                found.append(
                    ProjectionStatus(
                        name,
                        ProjectionState(row.state),
                        row.position,
                        head,
                        lag,
                        row.error,
                        row.failed_position,
                    )
                )
        return found

    async def pause(self, name: str) -> None:
        """Stop processing `name` after its current batch, until `resume`."""
        self._get(name)
        await self._set_state(name, ProjectionState.PAUSED)

    async def resume(self, name: str) -> None:
        """Run `name` again: paused, or parked (the failed event is tried again)."""
        self._get(name)
        await self._set_state(name, ProjectionState.RUNNING)

    async def skip(self, name: str) -> DeadLetter | None:
        """Drop the event parked projection `name` stopped on, for it alone, and run on.

        It acts on the projection's row in the database, so it needs no
        `Projection` here (`tidings dlq drop` has none). Returns the parked
        letter, now dropped; raises `ValueError` when `name` is not parked.
        """
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            row = await self.checkpoints.load(tx, name)
            skipped = (
                row is not None
                and row.failed_position is not None
                and await self.checkpoints.skip(tx, name, row.failed_position)
            )
            if not skipped:
                raise ValueError(f"projection {name!r} is not parked")
            dropped = await self._letters.forget(tx, name, parked_only=True)
        self._poke(name)
        return dropped[0] if dropped else None

    async def letters_of(self, name: str | None = None) -> list[DeadLetter]:
        """The dead letters of `name`, or of every projection here, oldest first."""
        names = [self._get(name).name] if name is not None else list(self.projections)
        found: list[DeadLetter] = []
        async with self.store.transaction() as tx:
            for each in names:
                found.extend(await self._letters.of(tx, each))
        return sorted(found, key=lambda letter: (letter.failed_at, str(letter.id)))

    async def retry_dead_letter(self, letter_id: UUID) -> bool:
        """Run a projection's handler again for the event of a dead letter it moved past.

        Tried by the projection's `retry` policy. On success the letter is
        dropped (with a transactional projection, in the transaction of the
        handler's writes) and True returned; otherwise a new letter with the
        new error replaces it in one transaction and False is returned. Raises
        `KeyError` for an unknown id, `LookupError` when the letter is not of
        a projection of this runner or its event's class is not loaded, and
        `ValueError` for a parked letter: `resume` or `skip` its projection.
        """
        letter = await self._letters.get(letter_id)
        name = projection_of(letter.handler)
        if name is None:
            raise LookupError(
                f"dead letter {letter_id} is of handler {letter.handler}, not of a projection"
            )
        projection = self._get(name)
        if letter.parked:
            raise ValueError(
                f"dead letter {letter_id} is the event projection {name!r} is parked on: "
                "resume or skip the projection"
            )
        if isinstance(letter.envelope.message, UndecodedEvent):
            raise LookupError(
                f"dead letter {letter_id} holds a {letter.message_type} event, whose class is not "
                "loaded in this process"
            )
        handlers = projection.handlers()
        handler = handlers.get(letter.message_type, handlers.get(Event.__event_type__))
        if handler is None:
            raise LookupError(f"projection {name!r} has no handler of {letter.message_type}")
        envelope = cast(Envelope[Event], letter.envelope)
        attempt = 0
        while True:
            attempt += 1
            try:
                if not projection.transactional:
                    await _called(handler, envelope, None)
                async with self.store.transaction() as tx:
                    if projection.transactional:
                        await _called(handler, envelope, tx)
                    await self._letters.remove(tx, letter.id)
                return True
            except Exception as exc:
                if attempt >= projection.retry.attempts:
                    error = exc
                    break
                if self.retry_waits:
                    delay = projection.retry.delay(attempt)
                    await anyio.sleep(delay)  # sync: time.sleep(delay)
        again = DeadLetter.of(letter.envelope, letter.handler, error, attempt)
        async with self.store.transaction() as tx:
            await self._letters.add(tx, again)
            await self._letters.remove(tx, letter.id)
        return False

    async def rebuild(self, name: str, progress: Progress | None = None) -> None:
        """Empty `name`'s read model and replay the log into it; returns once caught up.

        When a runner (this one, or one in another process) runs the
        projection, it does the replay and this waits for it; otherwise the
        replay runs here. `progress(position, head)` is called as it goes.
        Raises `ProjectionStopped` if the projection is parked or paused
        before it has caught up.
        """
        projection = self._get(name)
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            await self.checkpoints.add(tx, name)
            # The checkpoint's row first: a batch in progress finishes before the
            # read model is emptied, and none starts until this commits.
            await self.checkpoints.restart(tx, name)
            # The replay records anew whatever still fails.
            await self._letters.forget(tx, name, parked_only=False)
            await _call(projection.setup, tx)
            await _call(projection.reset, tx)
        self._poke(name)
        await self._catch_up(name, projection, progress)

    async def replace(
        self,
        projection: Projection,
        swap: Callable[[Any], Any],
        progress: Progress | None = None,
    ) -> None:
        """Build a new version of a projection beside the live one, then swap it in.

        The new `projection` (same name, its read model elsewhere) is built
        from the first event under a checkpoint of its own while the live
        one keeps serving. Then the live one is paused, the new one catches
        up, and one transaction calls `swap(tx)` (rename tables, repoint a
        view) and hands the live checkpoint over: readers never see an empty
        read model. From then on this runner runs the new projection.
        """
        self._check(projection)
        name = projection.name
        self._get(name)
        beside = f"{name}+next"
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            await self.checkpoints.add(tx, beside)
            await self.checkpoints.restart(tx, beside)
            await self._letters.forget(tx, beside, parked_only=False)
            await _call(projection.setup, tx)
            await _call(projection.reset, tx)
        await self._catch_up(beside, projection, progress)
        await self._set_state(name, ProjectionState.PAUSED)
        live = self.projections[name]
        try:
            await self._catch_up(beside, projection, progress)
            self.projections[name] = projection
            async with self.store.transaction() as tx:
                row = await self.checkpoints.load(tx, beside)
                assert row is not None
                await _call(swap, tx)
                await self.checkpoints.move(tx, name, row.position)
                await self.checkpoints.delete(tx, beside)
                await self._letters.forget(tx, name, parked_only=True)
                await self._letters.forget(tx, beside, parked_only=True)
        except BaseException:
            self.projections[name] = live
            await self._set_state(name, ProjectionState.RUNNING)
            raise
        self._poke(name)

    async def wait_for(self, name: str, position: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once `name` has processed the log up to `position` (read your writes).

        `position` is one an append returned (`AppendResult.positions`).
        Raises `ProjectionTimeout` when that takes more than `timeout` seconds.
        """
        projection = self._get(name)
        deadline = time.monotonic() + timeout
        while True:
            seen = self._changes.count
            reached = await self._reached(name, projection, position)
            if reached >= position:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProjectionTimeout(name, position, reached, timeout)
            await self._wait_changes(seen, min(remaining, 0.05))

    # The worker of one projection.

    async def _work(self, name: str) -> None:
        lock = self._advisory_lock(name)
        while not self._stopped:
            try:
                if await self._take(name, lock):
                    self._working.add(name)
                    try:
                        await self._follow(name, self.projections[name], lock=lock)
                    finally:
                        self._working.discard(name)
                else:
                    await self._sleep(min(self.poll_interval, self.lease / 3))
            except _Fenced:
                continue
            except Exception:
                logger.exception("projection %s: the runner failed; starting over", name)
                await self._sleep(self.poll_interval)
        try:
            async with self.store.transaction() as tx:
                await self.checkpoints.release(tx, name, self.owner)
        except Exception:
            logger.exception("projection %s: could not give the lease back", name)
        if lock is not None:
            await lock.release()

    def _advisory_lock(self, name: str) -> AsyncAdvisoryLock | None:
        """On PostgreSQL, the session lock that makes a runner the one of `name`."""
        if not self.checkpoints.postgres:
            return None
        from tidings.projections._async.locks import AsyncAdvisoryLock

        return AsyncAdvisoryLock(self.store.conninfo, self.store.schema, name)

    async def _take(self, name: str, lock: AsyncAdvisoryLock | None) -> bool:
        """Become the runner of `name`: by its advisory lock on PostgreSQL, else by lease."""
        if lock is None:
            return await self._claim(name)
        if not await lock.acquire():
            return False
        # Whoever held the lock before is gone: its lease counts for nothing.
        async with self.store.transaction() as tx:
            taken = await self.checkpoints.claim(tx, name, self.owner, self.lease, take_over=True)
        return taken

    async def _claim(self, name: str) -> bool:
        async with self.store.transaction() as tx:
            claimed = await self.checkpoints.claim(tx, name, self.owner, self.lease)
        return claimed

    async def _follow(
        self,
        name: str,
        projection: Projection,
        progress: Progress | None = None,
        head: int = 0,
        lock: AsyncAdvisoryLock | None = None,
    ) -> None:
        """Process `name` from its checkpoint; raises `_Fenced` when it must start over.

        With `progress`, it returns once caught up, reporting as it goes.
        """
        until_caught_up = progress is not None
        row = await self._load(name)
        handlers = dict(projection.handlers())
        subscription = AsyncSubscription(
            self.store,
            after=row.position,
            categories=projection.categories,
            types=projection.event_types(),
            batch_size=self.batch_size,
            poll_interval=min(self.poll_interval, self.lease / 3),
            signal=self._commits,
        )
        self._poked.discard(name)
        self._positions[name] = row.position
        checked = renewed = time.monotonic()
        while until_caught_up or not self._stopped:
            if name in self._poked:
                raise _Fenced  # changed by this process: start over from the row
            now = time.monotonic()
            if now - checked >= subscription.poll_interval:
                # Paused, resumed or rebuilt from another process, or taken over?
                checked = now
                latest = await self._load(name)
                if latest.position != row.position or latest.owner != self.owner:
                    raise _Fenced
                row = latest
            if now - renewed >= self.lease / 3:
                renewed = now
                if lock is not None and not await lock.held():
                    raise _Fenced
                if not await self._renew(name):
                    raise _Fenced
            if row.state not in _PROCESSING:
                if until_caught_up:
                    return
                await self._wait_changes(self._changes.count, subscription.poll_interval)
                continue
            seen = self._commits.count
            batch = await subscription.read()
            caught_up = len(batch) < self.batch_size
            if batch:
                await self._process(projection, handlers, row, batch, caught_up)
                if progress is not None:
                    head = max(head, row.position)
                    progress(row.position, head)
                if row.position != batch[-1].position:  # parked, or a dead letter
                    # The rest of the batch is read again, so this is not caught up yet.
                    subscription.position = row.position
                    caught_up = False
            elif row.state == ProjectionState.REBUILDING:
                async with self.store.transaction() as tx:
                    await self._save(tx, row, row.position, caught_up=True)
                row.state = ProjectionState.RUNNING
                self._changes.announce()
            if caught_up and until_caught_up:
                return
            if not batch:
                await subscription.wait(seen)

    async def _process(
        self,
        projection: Projection,
        handlers: Mapping[str, EventHandler],
        row: ProjectionRow,
        batch: list[RecordedEvent],
        caught_up: bool,
    ) -> None:
        failure = await self._apply(projection, handlers, row, batch, caught_up)
        if failure is None:
            return
        record, error = failure
        policy = projection.retry
        attempt = 1
        while attempt < policy.attempts:
            logger.warning(
                "projection %s failed on %s at position %d, attempt %d of %d: %r",
                row.name,
                record.type,
                record.position,
                attempt,
                policy.attempts,
                error,
            )
            if self.retry_waits:
                await self._sleep(policy.delay(attempt))
            attempt += 1
            failure = await self._apply(projection, handlers, row, [record], caught_up=False)
            if failure is None:
                return
            error = failure[1]
        reason = f"{type(error).__name__}: {error}"
        logger.error(
            "projection %s failed on %s at position %d after %d attempts",
            row.name,
            record.type,
            record.position,
            attempt,
            exc_info=error,
        )
        parks = projection.on_failure is OnFailure.PARK
        # Moving past the last event read also ends a rebuild that has caught up.
        ends = caught_up and record.position == batch[-1].position
        letter = DeadLetter.of(
            letter_envelope(record, self.codec),
            letter_handler(row.name),
            error,
            attempt,
            parked=parks,
        )
        async with self.store.transaction() as tx:
            if not parks:
                await self._save(tx, row, record.position, caught_up=ends)
            elif not await self.checkpoints.park(
                tx, row.name, self.owner, row.position, reason, record.position
            ):
                raise _Fenced
            await self._letters.add(tx, letter)
        if projection.on_failure is OnFailure.DEAD_LETTER:
            self._moved(row, record.position, caught_up=ends)
        else:
            row.state, row.error, row.failed_position = "parked", reason, record.position
            self._changes.announce()

    async def _apply(
        self,
        projection: Projection,
        handlers: Mapping[str, EventHandler],
        row: ProjectionRow,
        records: list[RecordedEvent],
        caught_up: bool,
    ) -> tuple[RecordedEvent, Exception] | None:
        """Handle `records` and move the checkpoint past them; the first failure, if any."""
        fallback = handlers.get(Event.__event_type__)
        if not projection.transactional:
            done: RecordedEvent | None = None
            failure: tuple[RecordedEvent, Exception] | None = None
            for record in records:
                try:
                    await self._handle(handlers, fallback, record, None)
                except Exception as exc:
                    failure = (record, exc)
                    break
                done = record
            if done is not None:
                async with self.store.transaction() as tx:
                    await self._save(tx, row, done.position, caught_up and failure is None)
                self._moved(row, done.position, caught_up and failure is None)
            return failure
        failed: tuple[int, Exception] | None = None
        try:
            async with self.store.transaction() as tx:
                # The fence first: its row lock keeps any other writer of this checkpoint
                # out until this transaction ends, so no two runners handle one batch.
                await self._save(tx, row, records[-1].position, caught_up)
                for index, record in enumerate(records):
                    try:
                        await self._handle(handlers, fallback, record, tx)
                    except Exception as exc:
                        failed = (index, exc)
                        raise _Rollback from exc
        except _Rollback:
            assert failed is not None
            index, error = failed
            if index:
                before = await self._apply(projection, handlers, row, records[:index], False)
                if before is not None:
                    return before
            return records[index], error
        self._moved(row, records[-1].position, caught_up)
        return None

    async def _handle(
        self,
        handlers: Mapping[str, EventHandler],
        fallback: EventHandler | None,
        record: RecordedEvent,
        tx: Any,
    ) -> None:
        handler = handlers.get(record.type, fallback)
        if handler is None:
            return
        await _called(handler, self.codec.envelope(record), tx)

    async def _save(self, tx: Any, row: ProjectionRow, position: int, caught_up: bool) -> None:
        if not await self.checkpoints.save(
            tx, row.name, self.owner, row.position, position, self.lease, caught_up
        ):
            raise _Fenced

    def _moved(self, row: ProjectionRow, position: int, caught_up: bool) -> None:
        row.position = position
        if caught_up:
            row.state = ProjectionState.RUNNING
        self._positions[row.name] = position
        self._changes.announce()

    # Helpers.

    async def _catch_up(self, name: str, projection: Projection, progress: Progress | None) -> None:
        """Wait while a worker catches `name` up, or do it here when none runs it."""
        report = progress if progress is not None else _ignore
        while True:
            if name not in self._working and await self._claim(name):
                try:
                    head = await self._head()
                    report(0, head)
                    await self._follow(name, projection, report, head)
                    row = await self._load(name)
                    if row.state != ProjectionState.RUNNING:
                        raise ProjectionStopped(name, ProjectionState(row.state), row.error)
                    report(row.position, row.position)
                except _Fenced:
                    continue
                finally:
                    async with self.store.transaction() as tx:
                        await self.checkpoints.release(tx, name, self.owner)
                return
            seen = self._changes.count
            row = await self._load(name)
            if row.state == ProjectionState.RUNNING:
                report(row.position, row.position)
                return
            if row.state not in _PROCESSING:
                raise ProjectionStopped(name, ProjectionState(row.state), row.error)
            report(row.position, await self._head())
            await self._wait_changes(seen, 0.05)

    async def _reached(self, name: str, projection: Projection, position: int) -> int:
        """How far `name` has processed: `position` itself once no event of it is left before."""
        current = self._positions.get(name, 0) if not self._stopped else 0
        if current < position:  # not here, or run by a runner elsewhere now
            async with self.store.transaction() as tx:
                await self.checkpoints.ensure(tx)
                row = await self.checkpoints.load(tx, name)
            current = max(current, row.position if row is not None else 0)
        if current >= position:
            return current
        # A projection reads only its own events; one reached an event of others' once
        # that event is readable and none of its own lies between.
        landed = await self.store.read_all(after=position - 1, limit=1)
        if not landed or landed[0].position < position:
            return current
        ahead = await self.store.read_all(
            after=current,
            limit=1,
            categories=projection.categories,
            types=projection.event_types(),
        )
        if not ahead or ahead[0].position > position:
            return position
        return current

    async def _load(self, name: str) -> ProjectionRow:
        async with self.store.transaction() as tx:
            row = await self.checkpoints.load(tx, name)
        if row is None:
            raise _Fenced
        return row

    async def _renew(self, name: str) -> bool:
        async with self.store.transaction() as tx:
            renewed = await self.checkpoints.renew(tx, name, self.owner, self.lease)
        return renewed

    async def _head(self) -> int:
        async with self.store.transaction() as tx:
            head = await self.checkpoints.head(tx)
        return head

    async def _set_state(self, name: str, state: ProjectionState) -> None:
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            await self.checkpoints.add(tx, name)
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

    def _get(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise LookupError(f"no projection named {name!r} (known: {known})") from None

    @staticmethod
    def _check(projection: Projection) -> None:
        name = getattr(projection, "name", None)
        if not isinstance(name, str) or not name or "+" in name:
            raise ConfigurationError(
                f"{type(projection).__qualname__}: a projection needs a name, without '+'"
            )


def _ignore(position: int, head: int) -> None:
    pass


async def _called(handler: EventHandler, envelope: Envelope[Event], tx: Any) -> None:
    result = handler(envelope.message, envelope, tx)
    if inspect.isawaitable(result):
        await result  # sync: run_coroutine(result, getattr(handler, "__qualname__", "handler"))


async def _call(fn: Callable[[Any], Any], tx: Any) -> None:
    result = fn(tx)
    if inspect.isawaitable(result):
        await result  # sync: run_coroutine(result, getattr(fn, "__qualname__", "setup"))
