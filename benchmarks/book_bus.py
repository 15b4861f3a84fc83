"""The message bus of Architecture Patterns with Python: the baseline tidings is measured against.

Only the type annotations are modernised; the dispatch logic is the book's own.
It has no envelopes, ids, retries, logging or middleware, and shares one unit
of work between calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Event:
    """Base class for domain events."""


class Command:
    """Base class for commands."""


Message = Command | Event


class AbstractUnitOfWork(Protocol):
    def collect_new_events(self) -> Iterable[Message]: ...


class MessageBus:
    def __init__(
        self,
        uow: AbstractUnitOfWork,
        event_handlers: dict[type[Event], list[Callable[..., Any]]],
        command_handlers: dict[type[Command], Callable[..., Any]],
    ):
        self.uow = uow
        self.event_handlers = event_handlers
        self.command_handlers = command_handlers

    def handle(self, message: Message) -> list[Any]:
        results = []
        queue = deque([message])

        while queue:
            message = queue.popleft()
            if isinstance(message, Event):
                self._handle_event(message, queue)
            elif isinstance(message, Command):
                result = self._handle_command(message, queue)
                results.append(result)

        return results

    def _handle_event(self, event: Event, queue: deque[Message]) -> None:
        for handler in self.event_handlers.get(type(event), []):
            try:
                handler(event)
                queue.extend(self.uow.collect_new_events())
            except Exception:
                # Log and continue - events don't fail the whole operation
                continue

    def _handle_command(self, command: Command, queue: deque[Message]) -> Any:
        handler = self.command_handlers[type(command)]
        result = handler(command)
        queue.extend(self.uow.collect_new_events())
        return result
