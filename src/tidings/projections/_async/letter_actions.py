"""Acting on the events projections failed on: list their dead letters, retry one, skip one."""

from __future__ import annotations

from typing import cast
from uuid import UUID

import anyio  # sync: import time

from tidings.dead_letters import DeadLetter, UndecodedEvent
from tidings.messages import Envelope, Event
from tidings.projections._async.base import AsyncRunnerBase, called
from tidings.projections.projection import projection_of

__all__ = ["AsyncLetterActions"]


class AsyncLetterActions(AsyncRunnerBase):
    """The dead letters of a runner's projections, and what can be done with them."""

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
        """The dead letters of `name` (of its partitions), or of all projections, oldest first."""
        names = self._keys(name) if name is not None else list(self._partitions)
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
        projection, _ = self._partition(name)
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
                    await called(handler, envelope, None)
                async with self.store.transaction() as tx:
                    if projection.transactional:
                        await called(handler, envelope, tx)
                    await self._letters.remove(tx, letter.id)
                return True
            except Exception as exc:
                if not projection.retry.retries(exc, attempt):
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
