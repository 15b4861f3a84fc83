"""The message bus: commands and queries to their one handler, events to all of theirs."""

from __future__ import annotations

import inspect  # sync:
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from uuid import UUID

import anyio  # sync: import time

from tidings.context import Dispatch, current_dispatch, reset_dispatch, set_dispatch
from tidings.dead_letters import AsyncDeadLetterStore, DeadLetter, DeadLetters, UndecodedEvent
from tidings.errors import CascadeLimitExceeded, DeadLetterNotRetryable, NoHandler
from tidings.handlers import (
    BoundHandler,
    HandlerTable,
    Router,
    bind_handlers,
    require_async,  # sync:
)
from tidings.messages import Command, Envelope, Event, Message
from tidings.observability import hooks
from tidings.observability.logs import envelope_fields
from tidings.retry import Retry

# sync: from tidings.runner import run_coroutine

__all__ = ["AsyncMessageBus", "AsyncMiddleware", "AsyncSend"]

logger = logging.getLogger("tidings.bus")

# The queue of the `handle` call in progress, for the last step of the middleware
# chain: middleware calls on with an envelope alone. Without middleware the queue
# is passed along instead, which costs less than setting a context variable.
_queue: ContextVar[deque[Envelope[Message]]] = ContextVar("tidings_queue")

AsyncCallNext = Callable[[Envelope[Message]], Awaitable[Any]]
AsyncMiddleware = Callable[[Envelope[Message], AsyncCallNext], Awaitable[Any]]
"""Wraps the handling of each message: `await call_next(envelope)` runs it."""


class AsyncMessageBus:
    """Dispatches commands, queries and events to their handlers.

    - A command or query goes to its one handler; the result is returned and an
      exception reaches the caller unchanged.
    - An event goes to every handler of its class or a base class. A failing
      handler is retried by its `Retry` policy, then logged and dead-lettered
      in `dead_letters` (in memory unless a durable store such as
      `AsyncSQLDeadLetters` is given); it never fails the sender or the other
      handlers.
    - Events committed while handling are queued and handled after the current
      message, in order, each call having its own queue.

    Besides `dependencies`, every handler may take an `AsyncSend` (by
    annotation, under any name) to send commands that continue the
    conversation of the message it handles.
    """

    def __init__(
        self,
        handlers: Router | Iterable[Router],
        *,
        dependencies: Mapping[str | type, Any] | None = None,
        retry: Retry | None = None,
        retry_waits: bool = True,
        middleware: Sequence[AsyncMiddleware] = (),
        dead_letters: DeadLetters | AsyncDeadLetterStore | None = None,
        max_cascade: int = 10_000,
    ) -> None:
        routers = [handlers] if isinstance(handlers, Router) else list(handlers)
        send = AsyncSend(self)
        provided: dict[str | type, Any] = {AsyncSend: send, **(dependencies or {})}
        self._table: HandlerTable = bind_handlers(routers, provided, retry or Retry())
        why = "make it async def to await AsyncSend"  # sync:
        require_async(self._table, send, why)  # sync:
        self.retry_waits = retry_waits
        self.dead_letters: DeadLetters | AsyncDeadLetterStore = (
            dead_letters if dead_letters is not None else DeadLetters()
        )
        self.max_cascade = max_cascade
        # The middleware wrapped around dispatch, outermost first; none calls straight through.
        self._middleware: AsyncCallNext | None = None
        if middleware:
            chain: AsyncCallNext = self._dispatch_envelope
            for layer in reversed(middleware):
                chain = _wrap(layer, chain)
            self._middleware = chain

    def add_middleware(self, layer: AsyncMiddleware) -> None:
        """Wrap `layer` around the middleware given so far: it runs first, outermost."""
        self._middleware = _wrap(layer, self._middleware or self._dispatch_envelope)

    async def handle(
        self,
        message: Message | Envelope[Message],
        *,
        correlation_id: UUID | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Handle `message` and everything it causes; return the command's or query's result.

        A bare message handed over inside a handler continues the conversation
        of the message being handled (its correlation id, and that message as
        its cause); `correlation_id` overrides the conversation, and an
        `Envelope` is used as given.
        """
        middleware = self._middleware
        dispatch = Dispatch(message, correlation_id, headers, current_dispatch())
        # The events committed while handling, to be handled next; each call has its own.
        queue: deque[Envelope[Message]] = deque()
        token = None if middleware is None else _queue.set(queue)
        try:
            result = await (
                self._dispatch_one(dispatch, queue)
                if middleware is None
                else middleware(dispatch.envelope)
            )
            handled = 1
            while queue:
                handled += 1
                if handled > self.max_cascade:
                    raise CascadeLimitExceeded(
                        f"{type(dispatch.message).__name__} {dispatch.envelope.message_id} led "
                        f"to more than {self.max_cascade} messages; is there a cycle of events?"
                    )
                caused = queue.popleft()
                await (
                    self._dispatch_one(Dispatch(caused), queue)
                    if middleware is None
                    else middleware(caused)
                )
        finally:
            if token is not None:
                _queue.reset(token)
        return result

    async def retry_dead_letter(self, letter_id: UUID) -> bool:
        """Run a dead letter's handler again, under its retry policy.

        On success the letter is dropped and True returned; otherwise it is
        replaced by a new letter with the new error, and False returned. The
        new letter is recorded before the old one is dropped, so a crash in
        between leaves two letters, never none. Raises `DeadLetterNotFound`
        (a `KeyError`) for an unknown id and `DeadLetterNotRetryable` (a
        `LookupError`) when the handler or the event's class is not loaded in
        this process.
        """
        letter: DeadLetter = await _settled(self.dead_letters.get(letter_id))
        message = letter.envelope.message
        if isinstance(message, UndecodedEvent):
            raise DeadLetterNotRetryable(
                f"dead letter {letter_id} holds a {message.type_name} event, whose class is not "
                "loaded in this process"
            )
        handler = self._table.by_name(letter.handler)
        if handler is None:
            raise DeadLetterNotRetryable(f"handler {letter.handler} is not registered on this bus")
        queue: deque[Envelope[Message]] = deque()
        failure = await self._run_event_handler(handler, Dispatch(letter.envelope), queue)
        if failure is not None:
            await self._record(failure)
        await _settled(self.dead_letters.remove(letter_id))
        for caused in queue:
            await self.handle(caused)
        return failure is None

    def _dispatch_envelope(self, envelope: Envelope[Message]) -> Awaitable[Any]:
        """The last step of the middleware chain, which may hand on an envelope of its own."""
        return self._dispatch_one(Dispatch(envelope), _queue.get())

    async def _dispatch_one(self, dispatch: Dispatch, queue: deque[Envelope[Message]]) -> Any:
        """Call the handlers of one message; what they commit joins `queue`."""
        message = dispatch.message
        if isinstance(message, Event):
            for handler in self._table.for_event(type(message)):
                # The first attempt is made here, as most succeed: the retry loop, a call
                # of its own, is entered only after a failure.
                token = set_dispatch(dispatch)
                try:
                    result = handler.call(dispatch)
                    if handler.is_async:
                        await result  # sync: run_coroutine(result, handler.name)
                except Exception as exc:
                    error: Exception | None = exc
                else:
                    error = None
                finally:
                    reset_dispatch(token)
                    # Events a handler committed are facts even if it failed afterwards.
                    if dispatch.sources:
                        queue.extend(dispatch.collect())
                if error is not None:
                    letter = await self._run_event_handler(handler, dispatch, queue, error)
                    if letter is not None:
                        await self._record(letter)
            return None
        single = self._table.for_single(type(message))
        if single is None:
            if not isinstance(message, Message):
                raise TypeError(
                    f"expected a Command, Event or Query, got {type(message).__name__}: {message!r}"
                )
            raise NoHandler(type(message))
        attempt = 0
        while True:
            attempt += 1
            token = set_dispatch(dispatch)
            try:
                result = single.call(dispatch)
                if single.is_async:
                    result = await result  # sync: result = run_coroutine(result, single.name)
            except Exception as exc:
                # A failed command hands nothing on; what it did commit is in the log all the same.
                dispatch.forget()
                if not single.retry.retries(exc, attempt):
                    raise
                self._log_retry(single, dispatch.envelope, attempt, exc)
            else:
                if dispatch.sources:  # a unit of work was used
                    queue.extend(dispatch.collect())
                return result
            finally:
                reset_dispatch(token)
            await self._wait(single.retry, attempt)

    async def _run_event_handler(
        self,
        handler: BoundHandler,
        dispatch: Dispatch,
        queue: deque[Envelope[Message]],
        first_error: Exception | None = None,
    ) -> DeadLetter | None:
        """Call an event handler under its retry policy; the dead letter if every attempt fails.

        `first_error` is what a first attempt, already made, raised. What the
        handler commits joins `queue`.
        """
        attempt, error = (0, None) if first_error is None else (1, first_error)
        while True:
            if error is not None:
                if not handler.retry.retries(error, attempt):
                    envelope = dispatch.envelope
                    logger.error(
                        "handler %s failed on %s %s (correlation %s) after %d attempts",
                        handler.name,
                        type(envelope.message).__name__,
                        envelope.message_id,
                        envelope.correlation_id,
                        attempt,
                        exc_info=error,
                        extra=envelope_fields(envelope, handler.name),
                    )
                    hooks.dead_lettered(handler.name, error)
                    return DeadLetter.of(envelope, handler.name, error, attempt)
                self._log_retry(handler, dispatch.envelope, attempt, error)
                await self._wait(handler.retry, attempt)
            attempt += 1
            token = set_dispatch(dispatch)
            try:
                result = handler.call(dispatch)
                if handler.is_async:
                    await result  # sync: run_coroutine(result, handler.name)
                return None
            except Exception as exc:
                error = exc
            finally:
                reset_dispatch(token)
                # Events a handler committed are facts even if it failed afterwards.
                if dispatch.sources:
                    queue.extend(dispatch.collect())

    async def _record(self, letter: DeadLetter) -> None:
        """Keep a dead letter; a store that fails to is logged, never raised into the sender."""
        try:
            await _settled(self.dead_letters.add(letter))
        except Exception:
            logger.exception(
                "cannot record the dead letter of handler %s on %s %s (correlation %s)",
                letter.handler,
                type(letter.envelope.message).__name__,
                letter.envelope.message_id,
                letter.correlation_id,
                extra=envelope_fields(letter.envelope, letter.handler),
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
            extra=envelope_fields(envelope, handler.name),
        )
        hooks.retried(handler.name, attempt, error)

    async def _wait(self, policy: Retry, failed_attempt: int) -> None:
        if self.retry_waits:
            delay = policy.delay(failed_attempt)
            await anyio.sleep(delay)  # sync: time.sleep(delay)


async def _settled(result: Any) -> Any:
    """The result of a dead-letter store call: in-memory ones return it, async ones await it."""
    if inspect.isawaitable(result):  # sync:
        return await result  # sync:
    return result


class AsyncSend:
    """Sends a command from inside a handler, continuing the conversation of the message handled.

    The bus provides one to every handler that asks for it by annotation::

        @router.handler
        async def on_allocated(event: Allocated, send: AsyncSend) -> None:
            await send(NotifyCustomer(event.order_id))

    The command's envelope is `Envelope.caused` by the message being handled:
    the same correlation id, and that message's id as its causation. It is
    handled at once, with everything it causes, and `send` returns its
    handler's result; its failure is raised from `send`, so an event handler
    that sends a command fails with it, and is retried and dead-lettered by the
    bus's rules for event handlers. Called outside any handler, it starts a
    conversation of its own, like `AsyncMessageBus.handle`.
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: AsyncMessageBus) -> None:
        self._bus = bus

    async def __call__(self, command: Command, *, headers: dict[str, str] | None = None) -> Any:
        """Handle `command` now, as caused by the message being handled; return its result."""
        if not isinstance(command, Command):
            raise TypeError(
                f"send() takes a Command, not {command!r}; "
                "events are committed through a unit of work"
            )
        return await self._bus.handle(command, headers=headers)


def _wrap(layer: AsyncMiddleware, call_next: AsyncCallNext) -> AsyncCallNext:
    def wrapped(envelope: Envelope[Message]) -> Awaitable[Any]:
        return layer(envelope, call_next)

    return wrapped
