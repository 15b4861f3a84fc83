"""Durable timeouts and scheduled messages, in a table beside the log."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import anyio  # sync: import threading

# sync: from tidings.projections.threads import TaskThreads
from tidings.codec import Codec
from tidings.context import current_cause
from tidings.errors import ConcurrencyError
from tidings.messages import Command, Envelope, Event, Message, new_id, utc_now
from tidings.scheduling.scheduled import CommandTypes, MessageKind, ScheduledMessage
from tidings.sidetables import dialect_of
from tidings.sidetables._async.made import AsyncSideTable
from tidings.sidetables._async.statements import execute, execute_count
from tidings.store._async.base import AsyncStoreWriter, AsyncTransactional
from tidings.store.records import NewEvent, StreamState

if TYPE_CHECKING:
    from tidings._async.bus import AsyncMessageBus

__all__ = ["AsyncScheduler"]

logger = logging.getLogger("tidings.scheduling")

_CREATE = """
CREATE TABLE IF NOT EXISTS {scheduled} (
    id TEXT PRIMARY KEY,
    due_at {real} NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data {blob} NOT NULL,
    stream TEXT,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    headers {blob} NOT NULL,
    owner TEXT,
    lease_until {real},
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
)"""
_INSERT = """
INSERT INTO {scheduled} (id, due_at, kind, type, schema_version, data, stream, correlation_id,
    causation_id, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING"""
_DUE_EVENTS = """
SELECT id, type, schema_version, data, stream, correlation_id, causation_id, headers
FROM {scheduled} WHERE kind = 'event' AND due_at <= ? ORDER BY due_at, id LIMIT ?"""
_CLAIM_COMMANDS = """
UPDATE {scheduled} SET owner = ?, lease_until = ?, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM {scheduled}
    WHERE kind = 'command' AND due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
    ORDER BY due_at, id LIMIT ?{skip_locked})
RETURNING id, type, data, correlation_id, causation_id, headers"""
_LIST = (
    "SELECT id, due_at, kind, type, stream, attempts, error FROM {scheduled} ORDER BY due_at, id"
)


class AsyncScheduler:
    """Keeps messages for later in the store's database and delivers each once it is due.

    - An **event** is appended to its stream (`stream=`) when due, in the same
      transaction that deletes it from the table: it lands exactly once, and
      subscribers, projections and process managers see it in the log.
    - A **command** is claimed under a lease (`lease` seconds), handled by
      `bus`, then deleted; if the process dies meanwhile, another claims it
      once the lease has run out. Its envelope's id is the schedule id, so a
      handler can recognise a repeat. A failing command is tried again after
      `retry_after` seconds, its error kept (see `pending`).

    A batch is claimed at once but handled one command after the other, so a
    claim is checked again, and renewed for a whole lease, right before its
    command is handled: a command whose lease ran out while the ones before
    it were handled, and that another scheduler claimed, is left to that one.
    While a command is handled its lease is renewed every third of a lease,
    however long the handler takes. So live schedulers never deliver one
    command twice; only a scheduler that dies (or stalls for longer than a
    lease) leaves its command in flight to be delivered again.

    PostgreSQL claims rows with `FOR UPDATE SKIP LOCKED`, so several
    schedulers (processes) share the work; SQLite's single writer gives the
    same. Scheduling may join the caller's transaction (`tx=`), so a timeout
    is set in the same commit as the state that needs it. Scheduling an id
    again is a no-op: retried code schedules once.
    """

    def __init__(
        self,
        store: AsyncTransactional,
        *,
        bus: AsyncMessageBus | None = None,
        commands: Iterable[type[Command]] = (),
        codec: Codec | None = None,
        lease: float = 30.0,
        retry_after: float = 5.0,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self.bus = bus
        self.codec = codec if codec is not None else Codec()
        self.commands = CommandTypes(commands)
        if lease <= 0 or retry_after < 0 or batch_size < 1:
            raise ValueError("lease must be positive, retry_after not negative, batch_size >= 1")
        self.lease = lease
        self.retry_after = retry_after
        self.batch_size = batch_size
        self.owner = uuid.uuid4().hex
        self._dialect = dialect_of(store)
        self._table = AsyncSideTable(store, self._create)
        self._stopped = False
        # Set to wake `run` early; made there, as an anyio event needs the running loop.
        self._wake: anyio.Event | None = None  # sync: self._wake: threading.Event | None = None

    async def schedule(
        self,
        message: Event | Command,
        *,
        at: datetime | None = None,
        after: timedelta | float | None = None,
        stream: str | None = None,
        schedule_id: UUID | None = None,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        tx: AsyncStoreWriter | None = None,
    ) -> UUID:
        """Keep `message` until `at` (or `after` from now); its schedule id.

        An event needs the `stream` it is appended to. Pass `tx` (a store
        transaction) to schedule in it. Scheduled inside a handler, the
        message continues the conversation of the message handled (unless
        `correlation_id` and `causation_id` say otherwise); outside one it
        begins its own.
        """
        due = _due(at, after)
        schedule_id = schedule_id or new_id()
        cause = current_cause()
        if cause is not None:
            correlation_id = correlation_id or cause.correlation_id
            causation_id = causation_id or cause.message_id
        correlation_id = correlation_id or schedule_id
        if isinstance(message, Event):
            if not stream:
                raise ValueError(f"a scheduled {type(message).__name__} event needs a stream")
            stored = self.codec.new_event(
                Envelope(message, schedule_id, correlation_id, causation_id, utc_now())
            )
            kind, type_name, version, data = (
                MessageKind.EVENT,
                stored.type,
                stored.schema_version,
                stored.data,
            )
        elif isinstance(message, Command):
            kind, version = MessageKind.COMMAND, 1
            type_name, data = self.commands.encode(message)
        else:
            raise TypeError(f"only events and commands are scheduled, not {message!r}")
        values = [
            str(schedule_id),
            due.timestamp(),
            kind.value,
            type_name,
            version,
            data,
            stream,
            str(correlation_id),
            None if causation_id is None else str(causation_id),
            b"",
        ]
        async with self._table.transaction(tx) as active:
            await execute(active, self._sql(_INSERT), values)
        self._poke()
        return schedule_id

    async def cancel(self, schedule_id: UUID, *, tx: AsyncStoreWriter | None = None) -> bool:
        """Forget a message not yet delivered; whether there was one."""
        statement = self._sql("DELETE FROM {scheduled} WHERE id = ?")
        async with self._table.transaction(tx) as active:
            return await execute_count(active, statement, [str(schedule_id)]) > 0

    async def pending(self) -> list[ScheduledMessage]:
        """The messages waiting, soonest first."""
        async with self._table.transaction() as tx:
            rows = await execute(tx, self._sql(_LIST))
        return [ScheduledMessage.from_row(row) for row in rows]

    async def fire_due(self, *, now: datetime | None = None) -> int:
        """Deliver what is due at `now` (default: now), a batch of each kind; how many."""
        moment = (now or utc_now()).timestamp()
        fired = await self._fire_events(moment)
        fired += await self._fire_commands(moment)
        return fired

    async def run(self, *, poll_interval: float = 0.5) -> None:
        """Deliver due messages until `stop`, looking every `poll_interval` seconds at most.

        Returns at once after `stop`, which is final: a stop that comes before
        `run` begins (the worker stopped while starting) is not lost.
        """
        while not self._stopped:
            wake = self._wake = anyio.Event()  # sync: wake = self._wake = threading.Event()
            try:
                fired = await self.fire_due()
            except ConcurrencyError:
                fired = 1  # a stream moved under a scheduled event: try again at once
            if fired or self._stopped:
                continue
            with anyio.move_on_after(poll_interval):  # sync: wake.wait(poll_interval)
                await wake.wait()  # sync:

    def stop(self) -> None:
        self._stopped = True
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _fire_events(self, moment: float) -> int:
        text = _DUE_EVENTS + (" FOR UPDATE SKIP LOCKED" if self._dialect.postgres else "")
        async with self._table.transaction() as tx:
            rows = await execute(tx, self._sql(text), [moment, self.batch_size])
            for row in rows:
                schedule_id, type_name, version, data, stream, correlation, causation, headers = row
                event = NewEvent(
                    event_id=UUID(schedule_id),
                    type=type_name,
                    schema_version=int(version),
                    data=bytes(data),
                    correlation_id=UUID(correlation),
                    causation_id=None if causation is None else UUID(causation),
                    occurred_at=utc_now(),
                    headers=bytes(headers),
                )
                await tx.append(stream, [event], StreamState.ANY)
                await execute(tx, self._sql("DELETE FROM {scheduled} WHERE id = ?"), [schedule_id])
        return len(rows)

    async def _fire_commands(self, moment: float) -> int:
        skip = " FOR UPDATE SKIP LOCKED" if self._dialect.postgres else ""
        claim = self._sql(_CLAIM_COMMANDS.replace("{skip_locked}", skip))
        clock = time.time()  # leases run on the clock, whatever `now` says is due
        async with self._table.transaction() as tx:
            rows = await execute(
                tx, claim, [self.owner, clock + self.lease, moment, clock, self.batch_size]
            )
        for schedule_id, type_name, data, correlation, causation, _headers in rows:
            await self._deliver(schedule_id, type_name, bytes(data), correlation, causation)
        return len(rows)

    async def _deliver(
        self, schedule_id: str, type_name: str, data: bytes, correlation: str, causation: str | None
    ) -> None:
        """Handle one claimed command, if the claim still holds, keeping it meanwhile; settle it."""
        if not await self._renew(schedule_id):
            logger.info("scheduled %s %s was claimed by another scheduler", type_name, schedule_id)
            return
        error: str | None = None
        done = anyio.Event()  # sync: done = threading.Event()
        async with anyio.create_task_group() as tasks:  # sync: with TaskThreads() as tasks:
            tasks.start_soon(self._keep_lease, schedule_id, done)
            try:
                if self.bus is None:
                    raise RuntimeError("a command is due but this scheduler has no bus")
                command = self.commands.decode(type_name, data)
                envelope: Envelope[Message] = Envelope(
                    command,
                    UUID(schedule_id),
                    UUID(correlation),
                    None if causation is None else UUID(causation),
                    utc_now(),
                )
                await self.bus.handle(envelope)
            except Exception as exc:
                logger.exception(
                    "scheduled %s %s failed; trying again later", type_name, schedule_id
                )
                error = f"{type(exc).__name__}: {exc}"
            finally:
                done.set()
        async with self.store.transaction() as tx:
            if error is None:
                statement = "DELETE FROM {scheduled} WHERE id = ? AND owner = ?"
                settled = await execute_count(tx, self._sql(statement), [schedule_id, self.owner])
            else:
                statement = (
                    "UPDATE {scheduled} SET owner = NULL, lease_until = ?, error = ? "
                    "WHERE id = ? AND owner = ?"
                )
                params = [time.time() + self.retry_after, error, schedule_id, self.owner]
                settled = await execute_count(tx, self._sql(statement), params)
        if not settled:
            logger.warning(
                "scheduled %s %s was handled after its lease was lost (the lease could not be "
                "renewed in time); another scheduler may deliver it again",
                type_name,
                schedule_id,
            )

    async def _renew(self, schedule_id: str) -> bool:
        """Extend this scheduler's claim on `schedule_id` to a lease from now; whether it holds.

        A claim by another scheduler changes the owner, so the owner alone
        fences: a claim whose lease ran out but that nobody took still holds.
        """
        statement = "UPDATE {scheduled} SET lease_until = ? WHERE id = ? AND owner = ?"
        async with self.store.transaction() as tx:
            params = [time.time() + self.lease, schedule_id, self.owner]
            return await execute_count(tx, self._sql(statement), params) > 0

    async def _keep_lease(
        self,
        schedule_id: str,
        done: anyio.Event,  # sync: done: threading.Event,
    ) -> None:
        """Renew the claim on `schedule_id` every third of a lease until `done` is set."""
        interval = self.lease / 3
        while True:
            with anyio.move_on_after(interval):  # sync: if done.wait(interval):
                await done.wait()  # sync: return
                return  # sync:
            try:
                if not await self._renew(schedule_id):
                    logger.warning("scheduled %s: the claim was lost while handling", schedule_id)
                    return
            except Exception:
                logger.exception("scheduled %s: cannot renew the lease; trying again", schedule_id)

    async def _create(self, tx: AsyncStoreWriter) -> None:
        lock = self._dialect.creation_lock
        if lock is not None:
            await execute(tx, lock, ["tidings scheduled"])
        await execute(tx, self._sql(_CREATE))
        index = "scheduled_due" if self._dialect.postgres else "tidings_scheduled_due"
        await execute(
            tx, self._sql(f"CREATE INDEX IF NOT EXISTS {index} ON {{scheduled}} (due_at)")
        )

    def _sql(self, template: str) -> str:
        return self._dialect.sql(template, scheduled="scheduled")


def _due(at: datetime | None, after: timedelta | float | None) -> datetime:
    if (at is None) == (after is None):
        raise ValueError("give a scheduled message either `at` or `after`")
    if at is not None:
        if at.tzinfo is None:
            raise ValueError(f"`at` must be timezone-aware, got {at!r}")
        return at
    delay = after if isinstance(after, timedelta) else timedelta(seconds=float(after or 0))
    return utc_now() + delay
