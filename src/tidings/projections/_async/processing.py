"""Processing one projection from its checkpoint: fenced batches, retries, parking, dead letters."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio  # sync:

from tidings.dead_letters import DeadLetter
from tidings.dead_letters.letter import letter_envelope
from tidings.messages import Envelope, Event
from tidings.observability import hooks
from tidings.observability.logs import record_fields
from tidings.projections._async.base import (
    PROCESSING,
    AsyncRunnerBase,
    Fenced,
    GiveBack,
    Progress,
    awaited,
    called,
)
from tidings.projections._async.readahead import AsyncReadAhead
from tidings.projections.blocking import AwaitableRefused
from tidings.projections.partitions import Lease, Partition, current
from tidings.projections.projection import (
    EventHandler,
    OnFailure,
    Projection,
    ProjectionState,
    letter_handler,
)
from tidings.projections.tables import ProjectionRow
from tidings.projections.turns import WriteTurns
from tidings.store._async.base import AsyncReadModelTransaction, AsyncStoreTransaction
from tidings.store.records import RecordedEvent
from tidings.subscriptions._async.subscription import AsyncSubscription

if TYPE_CHECKING:
    from tidings.projections._async.locks import AsyncAdvisoryLock

__all__ = ["AsyncProjectionProcessing"]

logger = logging.getLogger("tidings.projections")


class _Rollback(Exception):
    """A handler failed: roll the batch back."""


@asynccontextmanager
async def _unbatched() -> AsyncIterator[None]:
    """Statements one at a time, each reporting its own failure."""
    yield


@runtime_checkable
class _HandlesBatches(Protocol):
    """A non-transactional projection that takes a batch at once (the outbox relay)."""

    async def handle_batch(self, envelopes: list[Envelope[Event]]) -> tuple[int, Exception | None]:
        """Handle `envelopes`; how many of the first were handled, and the next one's error."""
        ...


class AsyncProjectionProcessing(AsyncRunnerBase):
    """Follows a projection's events in batches, each moving its checkpoint in one transaction."""

    async def _follow(
        self,
        name: str,
        projection: Projection[AsyncReadModelTransaction],
        progress: Progress | None = None,
        head: int = 0,
        lock: AsyncAdvisoryLock | None = None,
        until: int = 0,
    ) -> None:
        """Process row `name` from its checkpoint; raises `Fenced` when it must start over.

        With `progress`, it returns once caught up, reporting as it goes. A
        rebuild is not caught up before position `until`. A partition reads
        every event of its projection and handles its own; its checkpoint
        moves past the others' too.
        """
        until_caught_up = progress is not None
        part = self._partitions[name] if name in self._partitions else Partition(name, 0, 1)
        row = await self._load(name)
        lease = current.set(Lease(part.projection, part.index, part.count, self.owner, row.token))
        try:
            await self._follow_from(
                row, part, projection, progress, head, lock, until, until_caught_up
            )
        finally:
            current.reset(lease)

    async def _follow_from(
        self,
        row: ProjectionRow,
        part: Partition,
        projection: Projection[AsyncReadModelTransaction],
        progress: Progress | None,
        head: int,
        lock: AsyncAdvisoryLock | None,
        until: int,
        until_caught_up: bool,
    ) -> None:
        name = row.name
        handlers = dict(projection.handlers())
        turns = WriteTurns(self.store, self.batch_size)
        subscription = AsyncSubscription(
            self.store,
            after=row.position,
            categories=projection.categories,
            types=projection.event_types(),
            batch_size=turns.size,
            poll_interval=min(self.poll_interval, self.lease / 3),
            signal=self._commits,
        )
        ahead = AsyncReadAhead(subscription, lambda: self._commits.count)
        reads_ahead = getattr(self.store, "read_ahead", False) is True
        self._poked.discard(name)
        self._positions[name] = row.position
        checked = renewed = time.monotonic()
        while until_caught_up or not self._stopped:
            if name in self._poked:
                raise Fenced  # changed by this process: start over from the row
            now = time.monotonic()
            if now - checked >= subscription.poll_interval:
                # Paused, resumed or rebuilt from another process, or taken over?
                checked = now
                latest = await self._load(name)
                if (
                    latest.position != row.position
                    or latest.owner != self.owner
                    or latest.token != row.token
                ):
                    raise Fenced
                row = latest
                if not until_caught_up and self._surplus(part):
                    raise GiveBack
            if now - renewed >= self.lease / 3:
                renewed = now
                if lock is not None and not await lock.held():
                    raise Fenced
                if not await self._renew(name, row.token):
                    raise Fenced
            if row.state not in PROCESSING:
                ahead.discard(row.position)
                if until_caught_up:
                    return
                await self._wait_changes(self._changes.count, subscription.poll_interval)
                continue
            page = ahead.take()
            if page is None:
                seen, size = self._commits.count, subscription.batch_size
                batch = await subscription.read()
            else:
                batch, size, seen = page.events, page.size, page.seen
            caught_up = (
                len(batch) < size and (batch[-1].position if batch else row.position) >= until
            )
            if batch:
                end = batch[-1].position
                if len(batch) < size or not reads_ahead:
                    await self._step(turns, projection, handlers, row, part, batch, caught_up)
                else:  # more to read, most likely: read it while this batch is applied
                    await ahead.overlapped(
                        self._step, turns, projection, handlers, row, part, batch, caught_up
                    )
                subscription.batch_size = turns.size
                if progress is not None:
                    head = max(head, row.position)
                    progress(row.position, head)
                if row.position != end:  # parked, or a dead letter
                    # The rest of the batch is read again, so this is not caught up yet.
                    ahead.discard(row.position)
                    caught_up = False
            elif row.state == ProjectionState.REBUILDING and caught_up:
                async with self.store.transaction() as tx:
                    await self._save(tx, row, row.position, caught_up=True)
                row.state = ProjectionState.RUNNING
                self._changes.announce()
            if caught_up and until_caught_up:
                return
            if not batch:
                await subscription.wait(seen)

    async def _step(
        self,
        turns: WriteTurns,
        projection: Projection[AsyncReadModelTransaction],
        handlers: Mapping[str, EventHandler[AsyncReadModelTransaction]],
        row: ProjectionRow,
        part: Partition,
        batch: list[RecordedEvent],
        caught_up: bool,
    ) -> None:
        """Handle the events of `batch` that are `part`'s; move the checkpoint past all of it.

        Then, behind on a one-writer store, pause for the store's other writers.
        """
        end = batch[-1].position
        mine = batch
        if part.count > 1:
            key = projection.partition_key
            mine = [record for record in batch if part.holds(key(record))]
        async with self._batch_slot():
            started = time.monotonic()
            if mine:
                with hooks.processing_batch(row.name, mine):
                    await self._process(projection, handlers, row, mine, caught_up, end)
            else:  # none of this partition's: only the checkpoint moves on
                async with self.store.transaction() as tx:
                    await self._save(tx, row, end, caught_up)
                self._moved(row, end, caught_up)
            turns.took(len(batch), time.monotonic() - started)
        if not caught_up and turns.pause:
            # Behind on a one-writer store: let other processes' writers in.
            await anyio.sleep(turns.pause)  # sync: time.sleep(turns.pause)

    async def _process(
        self,
        projection: Projection[AsyncReadModelTransaction],
        handlers: Mapping[str, EventHandler[AsyncReadModelTransaction]],
        row: ProjectionRow,
        batch: list[RecordedEvent],
        caught_up: bool,
        end: int,
    ) -> None:
        """Handle `batch` and move the checkpoint to `end`, the last position read."""
        failure = await self._apply(projection, handlers, row, batch, caught_up, end=end)
        if failure is None:
            return
        record, error = failure
        policy = projection.retry
        attempt = 1
        # Async code under a blocking runner fails the same way every time: it parks at once.
        while policy.retries(error, attempt) and not isinstance(error, AwaitableRefused):
            logger.warning(
                "projection %s failed on %s at position %d, attempt %d of %d: %r",
                row.name,
                record.type,
                record.position,
                attempt,
                policy.attempts,
                error,
                extra=record_fields(record, row.name),
            )
            hooks.retried(row.name, attempt, error)
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
            extra=record_fields(record, row.name),
        )
        parks = projection.on_failure is OnFailure.PARK or isinstance(error, AwaitableRefused)
        hooks.dead_lettered(row.name, error, parked=parks)
        # Moving past the last event read also ends a rebuild that has caught up.
        ends = caught_up and record.position == end
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
                tx, row.name, self.owner, row.token, row.position, reason, record.position
            ):
                raise await self._refused(tx, row.name, row.token)
            await self._letters.add(tx, letter)
        if not parks:
            self._moved(row, record.position, caught_up=ends)
        else:
            row.state, row.error, row.failed_position = "parked", reason, record.position
            self._changes.announce()

    async def _apply(
        self,
        projection: Projection[AsyncReadModelTransaction],
        handlers: Mapping[str, EventHandler[AsyncReadModelTransaction]],
        row: ProjectionRow,
        records: list[RecordedEvent],
        caught_up: bool,
        batched: bool = True,
        end: int | None = None,
    ) -> tuple[RecordedEvent, Exception] | None:
        """Handle `records` and move the checkpoint past them (to `end`); the first failure.

        A transactional projection's statements for the whole batch are sent
        `batched` (on PostgreSQL, one round trip instead of one per
        statement). A failing statement may then report at the end of the
        batch, or at another event's handler, so after any failure the batch
        is handled again one statement at a time to find the event it was.
        """
        fallback = handlers.get(Event.__event_type__)
        target = records[-1].position if end is None else end
        if not projection.transactional:
            done: RecordedEvent | None = None
            failure: tuple[RecordedEvent, Exception] | None = None
            if isinstance(projection, _HandlesBatches):
                done, failure = await self._handle_batch(projection, records)
            else:
                for record in records:
                    try:
                        await self._handle(handlers, fallback, record, None)
                    except Exception as exc:
                        failure = (record, exc)
                        break
                    done = record
            if done is not None:
                reached = target if failure is None else done.position
                async with self.store.transaction() as tx:
                    await self._save(tx, row, reached, caught_up and failure is None)
                self._moved(row, reached, caught_up and failure is None)
            return failure
        failed: tuple[int, Exception] | None = None
        try:
            async with self.store.transaction() as tx:
                # The fence first: its row lock keeps any other writer of this checkpoint
                # out until this transaction ends, so no two runners handle one batch.
                await self._save(tx, row, target, caught_up)
                envelope = self.codec.envelope
                try:
                    async with tx.batched() if batched else _unbatched():
                        # `_handle`, inline: this loop is the catch-up's per-event cost.
                        for index, record in enumerate(records):
                            handler = handlers.get(record.type, fallback)
                            if handler is None:
                                continue
                            try:
                                message = envelope(record)
                                result = handler(message.message, message, tx)
                                if result is not None:  # a coroutine, or a value to ignore
                                    await awaited(result, handler)
                            except Exception as exc:
                                failed = (index, exc)
                                raise _Rollback from exc
                except _Rollback:
                    raise
                except Exception as exc:  # a statement's error, read back with the batch's
                    failed = (len(records) - 1, exc)
                    raise _Rollback from exc
        except _Rollback:
            assert failed is not None
            if batched:
                return await self._apply(projection, handlers, row, records, caught_up, False)
            index, error = failed
            if index:
                before = await self._apply(
                    projection, handlers, row, records[:index], False, batched=False
                )
                if before is not None:
                    return before
            return records[index], error
        self._moved(row, target, caught_up)
        return None

    async def _handle_batch(
        self, projection: _HandlesBatches, records: list[RecordedEvent]
    ) -> tuple[RecordedEvent | None, tuple[RecordedEvent, Exception] | None]:
        """`records` handed over at once: the last handled before the first failure, and it."""
        envelopes: list[Envelope[Event]] = []
        failure: tuple[RecordedEvent, Exception] | None = None
        for record in records:
            try:
                envelopes.append(self.codec.envelope(record))
            except Exception as exc:  # one that does not decode ends the batch before it
                failure = (record, exc)
                break
        handled, error = await projection.handle_batch(envelopes) if envelopes else (0, None)
        if error is not None:
            failure = (records[handled], error)
        return (records[handled - 1] if handled else None), failure

    async def _handle(
        self,
        handlers: Mapping[str, EventHandler[AsyncReadModelTransaction]],
        fallback: EventHandler[AsyncReadModelTransaction] | None,
        record: RecordedEvent,
        tx: AsyncStoreTransaction | None,
    ) -> None:
        handler = handlers.get(record.type, fallback)
        if handler is None:
            return
        await called(handler, self.codec.envelope(record), tx)

    async def _save(
        self, tx: AsyncStoreTransaction, row: ProjectionRow, position: int, caught_up: bool
    ) -> None:
        if not await self.checkpoints.save(
            tx, row.name, self.owner, row.token, row.position, position, self.lease, caught_up
        ):
            raise await self._refused(tx, row.name, row.token)

    def _moved(self, row: ProjectionRow, position: int, caught_up: bool) -> None:
        row.position = position
        if caught_up:
            row.state = ProjectionState.RUNNING
        self._positions[row.name] = position
        self._changes.announce()

    async def _renew(self, name: str, token: int) -> bool:
        async with self.store.transaction() as tx:
            renewed = await self.checkpoints.renew(tx, name, self.owner, token, self.lease)
        return renewed

    def _surplus(self, part: Partition) -> bool:
        """Whether this runner holds more of `part`'s projection than its share, `part` among
        the surplus (the highest indexes held), which it then gives back to other runners."""
        if part.count == 1:
            return False
        share = self._shares.get(part.projection, part.count)
        held = sorted(
            found.index
            for key in self._working
            if key in self._partitions
            and (found := self._partitions[key]).projection == part.projection
        )
        return len(held) > share and part.index in held[share:]
