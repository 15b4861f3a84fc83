# Generated from src/tidings/projections/_async/letter_actions.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Acting on the events projections failed on: list their dead letters, retry one, skip one."""

from __future__ import annotations

from typing import cast
from uuid import UUID

import time

from tidings.dead_letters import DeadLetter, UndecodedEvent
from tidings.messages import Envelope, Event
from tidings.projections._sync.base import RunnerBase, called
from tidings.projections.projection import projection_of

__all__ = ["LetterActions"]


class LetterActions(RunnerBase):
    """The dead letters of a runner's projections, and what can be done with them."""

    def skip(self, name: str) -> DeadLetter | None:
        """Drop the event parked projection `name` stopped on, for it alone, and run on.

        It acts on the projection's row in the database, so it needs no
        `Projection` here (`tidings dlq drop` has none). Returns the parked
        letter, now dropped; raises `ValueError` when `name` is not parked.
        """
        with self.store.transaction() as tx:
            self.checkpoints.ensure(tx)
            row = self.checkpoints.load(tx, name)
            skipped = (
                row is not None
                and row.failed_position is not None
                and self.checkpoints.skip(tx, name, row.failed_position)
            )
            if not skipped:
                raise ValueError(f"projection {name!r} is not parked")
            dropped = self._letters.forget(tx, name, parked_only=True)
        self._poke(name)
        return dropped[0] if dropped else None

    def letters_of(self, name: str | None = None) -> list[DeadLetter]:
        """The dead letters of `name`, or of every projection here, oldest first."""
        names = [self._get(name).name] if name is not None else list(self.projections)
        found: list[DeadLetter] = []
        with self.store.transaction() as tx:
            for each in names:
                found.extend(self._letters.of(tx, each))
        return sorted(found, key=lambda letter: (letter.failed_at, str(letter.id)))

    def retry_dead_letter(self, letter_id: UUID) -> bool:
        """Run a projection's handler again for the event of a dead letter it moved past.

        Tried by the projection's `retry` policy. On success the letter is
        dropped (with a transactional projection, in the transaction of the
        handler's writes) and True returned; otherwise a new letter with the
        new error replaces it in one transaction and False is returned. Raises
        `KeyError` for an unknown id, `LookupError` when the letter is not of
        a projection of this runner or its event's class is not loaded, and
        `ValueError` for a parked letter: `resume` or `skip` its projection.
        """
        letter = self._letters.get(letter_id)
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
                    called(handler, envelope, None)
                with self.store.transaction() as tx:
                    if projection.transactional:
                        called(handler, envelope, tx)
                    self._letters.remove(tx, letter.id)
                return True
            except Exception as exc:
                if not projection.retry.retries(exc, attempt):
                    error = exc
                    break
                if self.retry_waits:
                    delay = projection.retry.delay(attempt)
                    time.sleep(delay)
        again = DeadLetter.of(letter.envelope, letter.handler, error, attempt)
        with self.store.transaction() as tx:
            self._letters.add(tx, again)
            self._letters.remove(tx, letter.id)
        return False
