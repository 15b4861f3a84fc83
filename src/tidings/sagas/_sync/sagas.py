# Generated from src/tidings/sagas/_async/sagas.py by tools/unasync.py: edit that file, then run `make unasync`.
"""Running orchestrated sagas from their streams, so they survive crashes and races."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import time

from tidings._sync.awaiting import resolved
from tidings.codec import Codec
from tidings.errors import ConfigurationError, WrongExpectedVersion
from tidings.messages import Envelope, Event, utc_now
from tidings.sagas.events import (
    SagaCompensated,
    SagaCompleted,
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
    SagaState,
    StepAction,
    StepContext,
    StepTimedOut,
    idempotency_key,
    next_move,
)
from tidings.store.records import ExpectedVersion, StreamState

__all__ = ["SagaRunner"]

logger = logging.getLogger("tidings.sagas")


class SagaRunner:
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

    A compensation that keeps failing (past `compensation_attempts`) leaves
    the saga compensating; the error is raised and the next `recover` tries
    again.
    """

    def __init__(
        self,
        store: Any,
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

    def start(
        self,
        saga_name: str,
        saga_id: str,
        data: Mapping[str, Any],
        *,
        correlation_id: UUID | None = None,
    ) -> SagaState:
        """Start saga `saga_id` with `data` and run it to its end; starting it again only runs it.

        `data` must be JSON-shaped (it is stored in the saga's first event).
        """
        saga = self._saga(saga_name)
        if not saga_id or "/" in saga_id:
            raise ValueError(f"a saga id is not empty and has no '/': {saga_id!r}")
        started = Envelope.new(SagaStarted(saga_name, dict(data)), correlation_id=correlation_id)
        # Started before: run on from where it stands.
        with contextlib.suppress(WrongExpectedVersion):
            self.store.append(
                saga.stream(saga_id), [self.codec.new_event(started)], StreamState.NO_STREAM
            )
        return self.run(saga_name, saga_id)

    def run(self, saga_name: str, saga_id: str) -> SagaState:
        """Run saga `saga_id` from where its stream stands to its end; its final state."""
        saga = self._saga(saga_name)
        state, correlation_id = self._load(saga, saga_id)
        while True:
            move = next_move(saga, state)
            if move is None:
                return state
            try:
                events = self._perform(saga, state, move)
                self._record(saga, state, events, correlation_id)
            except WrongExpectedVersion:
                logger.info("saga %s changed meanwhile; reading it again", saga.stream(saga_id))
                state, correlation_id = self._load(saga, saga_id)

    def state(self, saga_name: str, saga_id: str) -> SagaState | None:
        """Saga `saga_id` as its stream stands, or None if it was never started."""
        state, _ = self._load(self._saga(saga_name), saga_id)
        return state if state.version else None

    def recover(self) -> list[SagaState]:
        """Run every saga of these definitions that has not finished; their final states.

        Call it when a process starts: sagas interrupted by a crash resume or
        compensate. Finished sagas cost one read of their last event.
        """
        resumed: list[SagaState] = []
        for saga in self.sagas.values():
            after: str | None = None
            while True:
                streams = self.store.list_streams(saga.name, after=after, limit=500)
                if not streams:
                    break
                after = streams[-1].name
                for info in streams:
                    (last,) = self.store.read_stream(info.name, backwards=True, limit=1)
                    if last.type in _FINAL:
                        continue
                    saga_id = info.name[len(saga.name) + 1 :]
                    resumed.append(self.run(saga.name, saga_id))
        return resumed

    def _perform(
        self, saga: Saga, state: SagaState, move: RunStep | Compensate | Finish
    ) -> list[Event]:
        """Carry out one move; the events that record its outcome."""
        if isinstance(move, Finish):
            return [move.event]
        if isinstance(move, Compensate):
            self._compensate(saga, state, move.step.name, move.step.compensation)
            return [StepCompensated(move.step.name)]
        step = move.step
        deadline = move.deadline
        if step.timeout is not None and deadline is None:
            deadline = utc_now() + timedelta(seconds=step.timeout)
            self._record(saga, state, [StepStarted(step.name, deadline)], None)
        context = self._context(saga, state, step.name, compensating=False)
        try:
            result = _call_before(deadline, step.action, context)
        except StepTimedOut as exc:
            logger.warning("saga %s: %s", saga.stream(state.saga_id), exc)
            return [StepFailed(step.name, str(exc), timed_out=True)]
        except Exception as exc:
            logger.warning(
                "saga %s: step %s failed: %r", saga.stream(state.saga_id), step.name, exc
            )
            return [StepFailed(step.name, f"{type(exc).__name__}: {exc}")]
        if result is not None and not isinstance(result, dict):
            raise TypeError(
                f"saga {saga.name!r} step {step.name!r} returned {type(result).__name__}; "
                "a step returns a dict (merged into the saga's data) or None"
            )
        return [StepCompleted(step.name, result or {})]

    def _compensate(
        self, saga: Saga, state: SagaState, step: str, compensation: StepAction | None
    ) -> None:
        assert compensation is not None
        context = self._context(saga, state, step, compensating=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                _call(compensation, context)
                return
            except Exception as exc:
                if attempt >= self.compensation_attempts:
                    logger.error(
                        "saga %s: compensation of %s failed %d times; it stays compensating",
                        saga.stream(state.saga_id),
                        step,
                        attempt,
                        exc_info=exc,
                    )
                    raise
            pause = self.retry_wait * attempt
            time.sleep(pause)

    def _record(
        self, saga: Saga, state: SagaState, events: list[Event], correlation_id: UUID | None
    ) -> None:
        """Append `events` at the version `state` was read at; the state takes them in."""
        expected: ExpectedVersion = state.version
        envelopes = [Envelope.new(event, correlation_id=correlation_id) for event in events]
        self.store.append(
            saga.stream(state.saga_id), [self.codec.new_event(e) for e in envelopes], expected
        )
        for event in events:
            state.apply(event)

    def _load(self, saga: Saga, saga_id: str) -> tuple[SagaState, UUID | None]:
        records = self.store.read_stream(saga.stream(saga_id))
        events = [self.codec.envelope(record).message for record in records]
        state = SagaState.replay(saga.name, saga_id, events)
        return state, records[0].correlation_id if records else None

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


def _call(action: StepAction, context: StepContext) -> Any:
    return resolved(action(context), context.step)


def _call_before(deadline: datetime | None, action: StepAction, context: StepContext) -> Any:
    """Run `action`; `StepTimedOut` if it is not done by `deadline`."""
    if deadline is None:
        return _call(action, context)
    remaining = (deadline - utc_now()).total_seconds()
    if remaining <= 0:
        raise StepTimedOut(context.step)
    try:
        result = _call(action, context)
    except TimeoutError:
        raise StepTimedOut(context.step) from None
    # Blocking code cannot be interrupted: a step that finished late timed out all the same.
    if utc_now() > deadline:
        raise StepTimedOut(context.step)
    return result
