# Generated from src/tidings/_async/bus.py by tools/unasync.py: edit that file, then run `make unasync`.
"""The message bus: commands and queries to their one handler, events to all of theirs."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from uuid import UUID

import time

from tidings.context import Dispatch, reset_dispatch, set_dispatch
from tidings.dead_letters import DeadLetterStore, DeadLetter, DeadLetters, UndecodedEvent
from tidings.errors import CascadeLimitExceeded, NoHandler
from tidings.handlers import BoundHandler, HandlerTable, Router, bind_handlers
from tidings.messages import Envelope, Event, Message
from tidings.retry import Retry

from tidings.runner import run_coroutine

__all__ = ["MessageBus", "Middleware"]

logger = logging.getLogger("tidings.bus")

# The queue of the `handle` call in progress; each call has its own.
_queue: ContextVar[deque[Envelope[Message]]] = ContextVar("tidings_queue")

CallNext = Callable[[Envelope[Message]], Any]
Middleware = Callable[[Envelope[Message], CallNext], Any]
"""Wraps the handling of each message: `call_next(envelope)` runs it."""


class MessageBus:
    """Dispatches commands, queries and events to their handlers.

    - A command or query goes to its one handler; the result is returned and an
      exception reaches the caller unchanged.
    - An event goes to every handler of its class or a base class. A failing
      handler is retried by its `Retry` policy, then logged and dead-lettered
      in `dead_letters` (in memory unless a durable store such as
      `SQLDeadLetters` is given); it never fails the sender or the other
      handlers.
    - Events committed while handling are queued and handled after the current
      message, in order, each call having its own queue.
    """

    def __init__(
        self,
        handlers: Router | Iterable[Router],
        *,
        dependencies: Mapping[str | type, Any] | None = None,
        retry: Retry | None = None,
        retry_waits: bool = True,
        middleware: Sequence[Middleware] = (),
        dead_letters: DeadLetters | DeadLetterStore | None = None,
        max_cascade: int = 10_000,
    ) -> None:
        routers = [handlers] if isinstance(handlers, Router) else list(handlers)
        self._table: HandlerTable = bind_handlers(routers, dependencies or {}, retry or Retry())
        self.retry_waits = retry_waits
        self.dead_letters: DeadLetters | DeadLetterStore = (
            dead_letters if dead_letters is not None else DeadLetters()
        )
        self.max_cascade = max_cascade
        self._dispatch: CallNext = self._dispatch_one
        for layer in reversed(middleware):
            self._dispatch = _wrap(layer, self._dispatch)

    def handle(
        self,
        message: Message | Envelope[Message],
        *,
        correlation_id: UUID | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Handle `message` and everything it causes; return the command's or query's result."""
        if isinstance(message, Envelope):
            envelope = message
        else:
            envelope = Envelope.new(message, correlation_id=correlation_id, headers=headers)
        queue: deque[Envelope[Message]] = deque()
        token = _queue.set(queue)
        try:
            result = self._dispatch(envelope)
            handled = 1
            while queue:
                handled += 1
                if handled > self.max_cascade:
                    raise CascadeLimitExceeded(
                        f"{type(envelope.message).__name__} {envelope.message_id} led to more "
                        f"than {self.max_cascade} messages; is there a cycle of events?"
                    )
                self._dispatch(queue.popleft())
        finally:
            _queue.reset(token)
        return result

    def retry_dead_letter(self, letter_id: UUID) -> bool:
        """Run a dead letter's handler again, under its retry policy.

        On success the letter is dropped and True returned; otherwise it is
        replaced by a new letter with the new error, and False returned. The
        new letter is recorded before the old one is dropped, so a crash in
        between leaves two letters, never none. Raises `KeyError` for an
        unknown id and `LookupError` when the handler or the event's class is
        not loaded in this process.
        """
        letter: DeadLetter = _settled(self.dead_letters.get(letter_id))
        message = letter.envelope.message
        if isinstance(message, UndecodedEvent):
            raise LookupError(
                f"dead letter {letter_id} holds a {message.type_name} event, whose class is not "
                "loaded in this process"
            )
        handler = self._table.by_name(letter.handler)
        if handler is None:
            raise LookupError(f"handler {letter.handler} is not registered on this bus")
        queue: deque[Envelope[Message]] = deque()
        token = _queue.set(queue)
        try:
            failure = self._run_event_handler(handler, letter.envelope)
        finally:
            _queue.reset(token)
        if failure is not None:
            self._record(failure)
        _settled(self.dead_letters.remove(letter_id))
        for caused in queue:
            self.handle(caused)
        return failure is None

    def _dispatch_one(self, envelope: Envelope[Message]) -> Any:
        message = envelope.message
        if isinstance(message, Event):
            for handler in self._table.for_event(type(message)):
                failure = self._run_event_handler(handler, envelope)
                if failure is not None:
                    self._record(failure)
            return None
        if not isinstance(message, Message):
            raise TypeError(
                f"expected a Command, Event or Query, got {type(message).__name__}: {message!r}"
            )
        single = self._table.for_single(type(message))
        if single is None:
            raise NoHandler(type(message))
        attempt = 0
        while True:
            attempt += 1
            dispatch = Dispatch(envelope)
            token = set_dispatch(dispatch)
            try:
                result = single.call(envelope)
                if single.is_async:
                    result = run_coroutine(result, single.name)
            except Exception as exc:
                if not single.retry.retries(exc, attempt):
                    raise
                self._log_retry(single, envelope, attempt, exc)
            else:
                _queue.get().extend(dispatch.collect())
                return result
            finally:
                # A failed command hands nothing on; what it did commit is in the log all the same.
                reset_dispatch(token)
            self._wait(single.retry, attempt)

    def _run_event_handler(
        self, handler: BoundHandler, envelope: Envelope[Message]
    ) -> DeadLetter | None:
        """Call an event handler under its retry policy; the dead letter if every attempt fails."""
        attempt = 0
        while True:
            attempt += 1
            dispatch = Dispatch(envelope)
            token = set_dispatch(dispatch)
            try:
                result = handler.call(envelope)
                if handler.is_async:
                    run_coroutine(result, handler.name)
                return None
            except Exception as exc:
                if not handler.retry.retries(exc, attempt):
                    logger.error(
                        "handler %s failed on %s %s (correlation %s) after %d attempts",
                        handler.name,
                        type(envelope.message).__name__,
                        envelope.message_id,
                        envelope.correlation_id,
                        attempt,
                        exc_info=exc,
                    )
                    return DeadLetter.of(envelope, handler.name, exc, attempt)
                self._log_retry(handler, envelope, attempt, exc)
            finally:
                reset_dispatch(token)
                # Events a handler committed are facts even if it failed afterwards.
                _queue.get().extend(dispatch.collect())
            self._wait(handler.retry, attempt)

    def _record(self, letter: DeadLetter) -> None:
        """Keep a dead letter; a store that fails to is logged, never raised into the sender."""
        try:
            _settled(self.dead_letters.add(letter))
        except Exception:
            logger.exception(
                "cannot record the dead letter of handler %s on %s %s (correlation %s)",
                letter.handler,
                type(letter.envelope.message).__name__,
                letter.envelope.message_id,
                letter.correlation_id,
            )

    def _log_retry(
        self, handler: BoundHandler, envelope: Envelope[Message], attempt: int, error: Exception
    ) -> None:
        logger.warning(
            "handler %s failed on %s %s, attempt %d of %d: %r",
            handler.name,
            type(envelope.message).__name__,
            envelope.message_id,
            attempt,
            handler.retry.attempts,
            error,
        )

    def _wait(self, policy: Retry, failed_attempt: int) -> None:
        if self.retry_waits:
            delay = policy.delay(failed_attempt)
            time.sleep(delay)


def _settled(result: Any) -> Any:
    """The result of a dead-letter store call: in-memory ones return it, async ones it."""
    return result


def _wrap(layer: Middleware, call_next: CallNext) -> CallNext:
    def wrapped(envelope: Envelope[Message]) -> Any:
        return layer(envelope, call_next)

    return wrapped
