"""Running process managers over the log: each reaction recorded once per event."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from tidings._async.awaiting import resolved
from tidings.codec import Codec
from tidings.errors import ConcurrencyError, ConfigurationError, WrongExpectedVersion
from tidings.messages import Envelope, Event, Message, utc_now
from tidings.projections.projection import EventHandler, Projection
from tidings.sagas.events import ProcessReacted
from tidings.sagas.process import Process, ProcessManager, ProcessState
from tidings.store._async.base import (
    AsyncEventStore,
    AsyncReadModelTransaction,
)

if TYPE_CHECKING:
    from tidings._async.bus import AsyncMessageBus
    from tidings.scheduling._async.scheduler import AsyncScheduler

__all__ = ["AsyncProcesses"]

logger = logging.getLogger("tidings.sagas")

# Ids of commands and timers sent by a reaction derive from it, so a repeat carries the same ids.
_IDS = uuid.UUID("6f3c54a6-0a1e-4b55-9d0f-9e3a8c1d2b7e")


class AsyncProcesses:
    """Delivers events to process managers, sends their commands, keeps their state.

    For each event a manager reacts to, `handle`:

    1. reads the instance's stream; an event it has handled already, or
       one for an ended instance, is skipped;
    2. runs the reaction on a copy of the instance's data;
    3. sends the commands it asked for through `bus`, each with an id
       derived from the instance and the event, so a handler can tell a
       repeat;
    4. appends `ProcessReacted` at the version it read, in one transaction
       with the timeouts the reaction scheduled (through `scheduler`).

    A crash before step 4 sends the commands again when the event comes
    again (at least once, same ids); after it, the event is skipped. A
    version conflict (the instance moved meanwhile) starts over from 1.

    `projections()` gives one projection per manager for an
    `AsyncProjectionRunner`: the runner reads the log from its checkpoint,
    catching up after a restart, and moves on only once `handle` returned.
    """

    def __init__(
        self,
        store: AsyncEventStore,
        bus: AsyncMessageBus,
        managers: Iterable[ProcessManager],
        *,
        scheduler: AsyncScheduler | None = None,
        codec: Codec | None = None,
        conflict_attempts: int = 10,
    ) -> None:
        self.store = store
        self.bus = bus
        self.scheduler = scheduler
        self.codec = codec if codec is not None else Codec()
        self.managers: dict[str, ProcessManager] = {}
        for manager in managers:
            if manager.name in self.managers:
                raise ConfigurationError(f"two process managers are named {manager.name!r}")
            self.managers[manager.name] = manager
        self.conflict_attempts = conflict_attempts

    async def handle(self, envelope: Envelope[Event]) -> None:
        """Let every manager that reacts to this event's type react to it."""
        for manager in self.managers.values():
            if type(envelope.message) in manager.reactions:
                await self.react(manager, envelope)

    async def react(self, manager: ProcessManager, envelope: Envelope[Event]) -> None:
        """Run `manager`'s reaction to one event, once."""
        event = envelope.message
        reaction = manager.reactions[type(event)]
        key = str(reaction.key(event))
        stream = manager.stream(key)
        for _ in range(self.conflict_attempts):
            state = await self.state(manager, key)
            if state is None:
                if not reaction.starts:
                    return
                state = ProcessState()
            if state.ended or envelope.message_id in state.handled:
                return
            process = Process(key, copy.deepcopy(state.data))
            await resolved(getattr(manager, reaction.attribute)(event, process), reaction.attribute)
            for index, command in enumerate(process.commands):
                command_id = uuid.uuid5(_IDS, f"{stream}/{envelope.message_id}/{index}")
                sent: Envelope[Message] = Envelope(
                    command, command_id, envelope.correlation_id, envelope.message_id, utc_now()
                )
                await self.bus.handle(sent)
            try:
                await self._record(manager, key, state, envelope, process)
            except WrongExpectedVersion:
                logger.info("process %s changed meanwhile; reacting again", stream)
                continue
            return
        raise ConcurrencyError(
            f"process {stream} changed under each of {self.conflict_attempts} reactions to "
            f"{type(event).__name__} {envelope.message_id}; it will be delivered again"
        )

    async def state(self, manager: ProcessManager, key: str) -> ProcessState | None:
        """Instance `key` of `manager` as its stream stands, or None if it never started."""
        records = await self.store.read_stream(manager.stream(key))
        if not records:
            return None
        return ProcessState.replay(self.codec.envelope(record).message for record in records)

    def projections(self) -> list[Projection[AsyncReadModelTransaction]]:
        """One projection per manager, named `process:<name>`, for a projection runner."""
        return [_ManagerProjection(self, manager) for manager in self.managers.values()]

    async def _record(
        self,
        manager: ProcessManager,
        key: str,
        state: ProcessState,
        cause: Envelope[Event],
        process: Process,
    ) -> None:
        reacted = ProcessReacted(
            cause.message_id,
            type(cause.message).__event_type__,
            process.data,
            [type(command).__name__ for command in process.commands],
            process.ended,
        )
        stream = manager.stream(key)
        envelope: Envelope[Event] = Envelope(
            reacted, uuid.uuid4(), cause.correlation_id, cause.message_id, utc_now()
        )
        if process.scheduled and self.scheduler is None:
            raise ConfigurationError(
                f"process manager {manager.name!r} schedules messages: give AsyncProcesses "
                "a scheduler"
            )
        async with self.store.transaction() as tx:
            await tx.append(stream, [self.codec.new_event(envelope)], state.version)
            for index, (message, due) in enumerate(process.scheduled):
                assert self.scheduler is not None  # refused above
                await self.scheduler.schedule(
                    message,
                    at=due,
                    stream=manager.timer_stream(key) if isinstance(message, Event) else None,
                    schedule_id=uuid.uuid5(_IDS, f"{stream}/{cause.message_id}/timer/{index}"),
                    correlation_id=cause.correlation_id,
                    causation_id=cause.message_id,
                    tx=tx,
                )


class _ManagerProjection(Projection[AsyncReadModelTransaction]):
    """A manager's reactions as a projection: at least once, checkpoint after each batch."""

    transactional = False

    def __init__(self, processes: AsyncProcesses, manager: ProcessManager) -> None:
        self.name = f"process:{manager.name}"
        self._processes = processes
        self._manager = manager

    def handlers(self) -> Mapping[str, EventHandler[AsyncReadModelTransaction]]:
        return {event_type.__event_type__: self._handle for event_type in self._manager.reactions}

    def event_types(self) -> frozenset[str]:
        return frozenset(event_type.__event_type__ for event_type in self._manager.reactions)

    async def _handle(
        self, event: Event, envelope: Envelope[Event], tx: AsyncReadModelTransaction | None
    ) -> None:
        await self._processes.react(self._manager, envelope)

    def reset(self, tx: object) -> None:
        """Nothing to empty: the instances' state is in their streams, which a rebuild keeps."""
