"""Running orchestrated sagas from their streams, so they survive crashes and races."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio  # sync: import time

from tidings._async.awaiting import resolved
from tidings.codec import Codec
from tidings.context import Dispatch, current_cause, reset_dispatch, set_dispatch
from tidings.dead_letters import AsyncSQLDeadLetters, DeadLetter, DeadLetters
from tidings.errors import ConfigurationError, WrongExpectedVersion
from tidings.messages import Envelope, Event, utc_now
from tidings.observability import hooks
from tidings.observability.logs import envelope_fields
from tidings.sagas.events import (
    SagaCompensated,
    SagaCompleted,
    SagaParked,
    SagaResumed,
    SagaStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from tidings.sagas.saga import (
    Compensate,
    Finish,
    RunStep,
    Saga,
    SagaFailure,
    SagaRecoveryFailed,
    SagaState,
    SagaStatus,
    StepAction,
    StepContext,
    StepTimedOut,
    idempotency_key,
    letter_handler,
    next_move,
)
from tidings.store._async.base import AsyncEventStore, AsyncStoreTransaction
from tidings.store.records import ExpectedVersion, NewEvent, StreamState

__all__ = ["AsyncSagaRunner"]

logger = logging.getLogger("tidings.sagas")


class AsyncSagaRunner:
    """Starts, runs and recovers sagas whose state is the stream `<saga name>-<saga id>`.

    Each step's outcome is appended to the saga's stream before the next
    step runs, with the version it was read at as the expected version. So:

    - After a crash, `recover()` (or `run`) reads the stream and carries on:
      a step whose outcome was not recorded runs again with the same
      `idempotency_key`, which the service uses to take effect once.
    - Two runners driving one saga at once both may call a step, with the
      same key; one records the outcome, the other gets a version conflict,
      reads the stream again and moves on from there. The saga ends in the
      one state its stream records.

    A saga that cannot go on by itself, because a compensation keeps failing
    (past `compensation_attempts`) or a step returned what is not a dict, is
    parked: `SagaParked` is recorded in its stream and, in the same
    transaction, a dead letter of the handler `saga:<name>` marked parked
    (in the store's database, where `tidings dlq` lists it). It stays
    parked, skipped by `recover`, until `resume` carries it on.

    Steps run inside the saga's conversation: a message a step sends through
    a bus, or what its unit of work commits, carries the saga's correlation
    id and is caused by its `SagaStarted`.
    """

    def __init__(
        self,
        store: AsyncEventStore,
        sagas: Iterable[Saga],
        *,
        codec: Codec | None = None,
        compensation_attempts: int = 3,
        retry_wait: float = 0.05,
    ) -> None:
        self.store = store
        self.codec = codec if codec is not None else Codec()
        self.sagas: dict[str, Saga] = {}
        for saga in sagas:
            if saga.name in self.sagas:
                raise ConfigurationError(f"two sagas are named {saga.name!r}")
            self.sagas[saga.name] = saga
        if compensation_attempts < 1:
            raise ValueError("compensation_attempts must be at least 1")
        self.compensation_attempts = compensation_attempts
        self.retry_wait = retry_wait
        self.dead_letters: DeadLetters | AsyncSQLDeadLetters = _letters_of(store, self.codec)

    async def start(
        self,
        saga_name: str,
        saga_id: str,
        data: Mapping[str, Any],
        *,
        correlation_id: UUID | None = None,
    ) -> SagaState:
        """Start saga `saga_id` with `data` and run it to its end; starting it again only runs it.

        `data` must be JSON-shaped (it is stored in the saga's first event).
        Started inside a handler, the saga continues the conversation of the
        message handled, unless `correlation_id` names another.
        """
        saga = self._saga(saga_name)
        if not saga_id or "/" in saga_id:
            raise ValueError(f"a saga id is not empty and has no '/': {saga_id!r}")
        cause = current_cause()
        started = Envelope.new(
            SagaStarted(saga_name, dict(data)),
            correlation_id=correlation_id or (cause.correlation_id if cause else None),
            causation_id=cause.message_id if cause else None,
        )
        # Started before: run on from where it stands.
        with contextlib.suppress(WrongExpectedVersion):
            await self.store.append(
                saga.stream(saga_id), [self.codec.new_event(started)], StreamState.NO_STREAM
            )
        return await self.run(saga_name, saga_id)

    async def run(self, saga_name: str, saga_id: str) -> SagaState:
        """Run saga `saga_id` from where its stream stands to its end; its final state.

        A saga that parks returns its parked state (status `PARKED`, with the error).
        """
        saga = self._saga(saga_name)
        state, origin = await self._load(saga, saga_id)
        while True:
            move = next_move(saga, state)
            if move is None:
                return state
            try:
                try:
                    events = await self._perform(saga, state, move, origin)
                except _CannotGoOn as stuck:
                    await self._park(saga, state, stuck, origin)
                    continue
                await self._record(saga, state, events, origin)
            except WrongExpectedVersion:
                logger.info("saga %s changed meanwhile; reading it again", saga.stream(saga_id))
                state, origin = await self._load(saga, saga_id)

    async def resume(self, saga_name: str, saga_id: str) -> SagaState:
        """Carry a parked saga on where it stopped, and run it on; its state then.

        Its parked dead letter is dropped in the transaction that records
        `SagaResumed`. A saga that is not parked is only run.
        """
        saga = self._saga(saga_name)
        state, origin = await self._load(saga, saga_id)
        if state.status is SagaStatus.PARKED:
            stream = saga.stream(saga_id)
            resumed = self._codec_event(SagaResumed(), origin)
            with contextlib.suppress(WrongExpectedVersion):  # resumed by someone else meanwhile
                async with self.store.transaction() as tx:
                    await tx.append(stream, [resumed], state.version)
                    for letter in await self._parked_letters(saga, tx):
                        if letter.envelope.stream == stream:
                            await self._remove_letter(tx, letter)
        return await self.run(saga_name, saga_id)

    async def state(self, saga_name: str, saga_id: str) -> SagaState | None:
        """Saga `saga_id` as its stream stands, or None if it was never started."""
        state, _ = await self._load(self._saga(saga_name), saga_id)
        return state if state.version else None

    async def recover(self) -> list[SagaState]:
        """Run every saga of these definitions that has not finished; their final states.

        Call it when a process starts: sagas interrupted by a crash resume or
        compensate. Each is run on its own: one that fails or parks does not
        stop the others. Once all were tried, `SagaRecoveryFailed` names the
        ones that failed or parked (with the states of the others). Finished
        and parked sagas cost one read of their last event.
        """
        recovered: list[SagaState] = []
        failures: list[SagaFailure] = []
        for saga in self.sagas.values():
            parked = 0
            after: str | None = None
            while True:
                streams = await self.store.list_streams(saga.name, after=after, limit=500)
                if not streams:
                    break
                after = streams[-1].name
                for info in streams:
                    (last,) = await self.store.read_stream(info.name, backwards=True, limit=1)
                    if last.type in _FINAL:
                        continue
                    if last.type == _PARKED:
                        parked += 1
                        continue
                    saga_id = info.name[len(saga.name) + 1 :]
                    try:
                        state = await self.run(saga.name, saga_id)
                    except Exception as exc:
                        logger.exception("saga %s could not be recovered", info.name)
                        failures.append(SagaFailure(saga.name, saga_id, _described(exc)))
                        continue
                    if state.status is SagaStatus.PARKED:
                        failures.append(SagaFailure(saga.name, saga_id, state.error or "parked"))
                    else:
                        recovered.append(state)
            if parked:
                logger.warning(
                    "%d %s saga(s) are parked, waiting to be resumed (tidings dlq list "
                    "--handler %s)",
                    parked,
                    saga.name,
                    letter_handler(saga.name),
                )
        if failures:
            raise SagaRecoveryFailed(failures, recovered)
        return recovered

    async def _perform(
        self,
        saga: Saga,
        state: SagaState,
        move: RunStep | Compensate | Finish,
        origin: Envelope[Event] | None,
    ) -> list[Event]:
        """Carry out one move; the events that record its outcome.

        `_CannotGoOn` when the saga must be parked.
        """
        if isinstance(move, Finish):
            return [move.event]
        if isinstance(move, Compensate):
            await self._compensate(saga, state, move.step.name, move.step.compensation, origin)
            return [StepCompensated(move.step.name)]
        step = move.step
        deadline = move.deadline
        if step.timeout is not None and deadline is None:
            deadline = utc_now() + timedelta(seconds=step.timeout)
            await self._record(saga, state, [StepStarted(step.name, deadline)], origin)
        context = self._context(saga, state, step.name, compensating=False)
        try:
            with hooks.saga_step(saga.name, step.name, saga.stream(state.saga_id)):
                result = await _call_before(deadline, step.action, context, origin)
        except StepTimedOut as exc:
            logger.warning("saga %s: %s", saga.stream(state.saga_id), exc)
            return [StepFailed(step.name, str(exc), timed_out=True)]
        except Exception as exc:
            logger.warning(
                "saga %s: step %s failed: %r", saga.stream(state.saga_id), step.name, exc
            )
            return [StepFailed(step.name, f"{type(exc).__name__}: {exc}")]
        if result is not None and not isinstance(result, dict):
            raise _CannotGoOn(
                step.name,
                TypeError(
                    f"saga {saga.name!r} step {step.name!r} returned {type(result).__name__}; "
                    "a step returns a dict (merged into the saga's data) or None"
                ),
                1,
            )
        return [StepCompleted(step.name, result or {})]

    async def _compensate(
        self,
        saga: Saga,
        state: SagaState,
        step: str,
        compensation: StepAction | None,
        origin: Envelope[Event] | None,
    ) -> None:
        assert compensation is not None
        context = self._context(saga, state, step, compensating=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                await _call(compensation, context, origin)
                return
            except Exception as exc:
                if attempt >= self.compensation_attempts:
                    raise _CannotGoOn(step, exc, attempt) from exc
            pause = self.retry_wait * attempt
            await anyio.sleep(pause)  # sync: time.sleep(pause)

    async def _park(
        self, saga: Saga, state: SagaState, stuck: _CannotGoOn, origin: Envelope[Event] | None
    ) -> None:
        """Record `SagaParked` and its parked dead letter, in one transaction."""
        stream = saga.stream(state.saga_id)
        parked = SagaParked(stuck.step, _described(stuck.error), stuck.attempts)
        envelope = self._envelope(parked, origin)
        async with self.store.transaction() as tx:
            result = await tx.append(stream, [self.codec.new_event(envelope)], state.version)
            letter = DeadLetter.of(
                envelope.stored(stream, result.version, result.positions[-1]),
                letter_handler(saga.name),
                stuck.error,
                stuck.attempts,
                parked=True,
            )
            await self._add_letter(tx, letter)
        state.apply(parked)
        logger.error(
            "saga %s parked: %s failed %d time(s); resume it once fixed (tidings dlq retry %s)",
            stream,
            stuck.step,
            stuck.attempts,
            letter.id,
            exc_info=stuck.error,
            extra=envelope_fields(letter.envelope, letter.handler),
        )
        hooks.dead_lettered(letter.handler, stuck.error, parked=True)

    async def _record(
        self, saga: Saga, state: SagaState, events: list[Event], origin: Envelope[Event] | None
    ) -> None:
        """Append `events` at the version `state` was read at; the state takes them in."""
        expected: ExpectedVersion = state.version
        await self.store.append(
            saga.stream(state.saga_id),
            [self._codec_event(event, origin) for event in events],
            expected,
        )
        for event in events:
            state.apply(event)

    def _envelope(self, event: Event, origin: Envelope[Event] | None) -> Envelope[Event]:
        """An envelope for one of the saga's own events, in the saga's conversation."""
        return Envelope.new(event, correlation_id=origin.correlation_id if origin else None)

    def _codec_event(self, event: Event, origin: Envelope[Event] | None) -> NewEvent:
        return self.codec.new_event(self._envelope(event, origin))

    async def _load(self, saga: Saga, saga_id: str) -> tuple[SagaState, Envelope[Event] | None]:
        """The saga's state, and the envelope of its `SagaStarted` (None if never started)."""
        records = await self.store.read_stream(saga.stream(saga_id))
        envelopes = [self.codec.envelope(record) for record in records]
        state = SagaState.replay(saga.name, saga_id, [e.message for e in envelopes])
        return state, envelopes[0] if envelopes else None

    async def _parked_letters(self, saga: Saga, tx: AsyncStoreTransaction) -> list[DeadLetter]:
        handler = letter_handler(saga.name)
        if isinstance(self.dead_letters, DeadLetters):
            return self.dead_letters.list(handler=handler)
        return await self.dead_letters.list(handler=handler, tx=tx)

    async def _add_letter(self, tx: AsyncStoreTransaction, letter: DeadLetter) -> None:
        if isinstance(self.dead_letters, DeadLetters):
            self.dead_letters.add(letter)
        else:
            await self.dead_letters.add(letter, tx=tx)

    async def _remove_letter(self, tx: AsyncStoreTransaction, letter: DeadLetter) -> None:
        if isinstance(self.dead_letters, DeadLetters):
            self.dead_letters.remove(letter.id)
        else:
            await self.dead_letters.remove(letter.id, tx=tx)

    def _context(self, saga: Saga, state: SagaState, step: str, compensating: bool) -> StepContext:
        key = idempotency_key(saga, state.saga_id, step, compensating)
        action_key = idempotency_key(saga, state.saga_id, step, False)
        return StepContext(saga.name, state.saga_id, step, dict(state.data), key, action_key)

    def _saga(self, name: str) -> Saga:
        try:
            return self.sagas[name]
        except KeyError:
            raise ConfigurationError(f"no saga is named {name!r} on this runner") from None


_FINAL = frozenset({SagaCompleted.__event_type__, SagaCompensated.__event_type__})
_PARKED = SagaParked.__event_type__

# Where sagas of a store without a database of its own (the memory store) keep their letters.
_memory_letters: weakref.WeakKeyDictionary[object, DeadLetters] = weakref.WeakKeyDictionary()


def _letters_of(store: AsyncEventStore, codec: Codec) -> DeadLetters | AsyncSQLDeadLetters:
    """The store's dead letters: in its database, or in memory beside a memory store."""
    try:
        return AsyncSQLDeadLetters(store, codec=codec)
    except TypeError:
        return _memory_letters.setdefault(store, DeadLetters())


class _CannotGoOn(Exception):
    """The saga must be parked: `step` failed with `error` after `attempts`."""

    def __init__(self, step: str, error: Exception, attempts: int) -> None:
        super().__init__(step)
        self.step, self.error, self.attempts = step, error, attempts


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def _call(action: StepAction, context: StepContext, origin: Envelope[Event] | None) -> Any:
    """Run `action` inside the saga's conversation (see `AsyncSagaRunner`)."""
    token = set_dispatch(Dispatch(origin)) if origin is not None else None
    try:
        return await resolved(action(context), context.step)
    finally:
        if token is not None:
            reset_dispatch(token)


async def _call_before(
    deadline: datetime | None,
    action: StepAction,
    context: StepContext,
    origin: Envelope[Event] | None,
) -> Any:
    """Run `action`; `StepTimedOut` if it is not done by `deadline`."""
    if deadline is None:
        return await _call(action, context, origin)
    remaining = (deadline - utc_now()).total_seconds()
    if remaining <= 0:
        raise StepTimedOut(context.step)
    try:
        with anyio.fail_after(remaining):  # sync: result = _call(action, context, origin)
            result = await _call(action, context, origin)  # sync:
    except TimeoutError:
        raise StepTimedOut(context.step) from None
    # Blocking code cannot be interrupted: a step that finished late timed out all the same.
    if utc_now() > deadline:
        raise StepTimedOut(context.step)
    return result
