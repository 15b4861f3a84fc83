"""Scheduled messages as stored, and the command types a scheduler can store."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from tidings.errors import ConfigurationError
from tidings.messages import Command

__all__ = ["CommandTypes", "MessageKind", "ScheduledMessage"]

_encoder = msgspec.json.Encoder(decimal_format="string")


class MessageKind(enum.StrEnum):
    EVENT = "event"
    """Appended to its stream when due, in the transaction that removes it: exactly once."""
    COMMAND = "command"
    """Handled by the bus when due, under a lease: at least once, with its schedule id as id."""


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    """A message waiting for its time; `attempts` and `error` tell of failed commands."""

    id: UUID
    due_at: datetime
    kind: MessageKind
    type: str
    stream: str | None
    attempts: int
    error: str | None

    @staticmethod
    def from_row(row: tuple[Any, ...]) -> ScheduledMessage:
        schedule_id, due_at, kind, type_name, stream, attempts, error = row
        return ScheduledMessage(
            UUID(schedule_id),
            datetime.fromtimestamp(float(due_at), UTC),
            MessageKind(kind),
            type_name,
            stream,
            int(attempts),
            error,
        )


class CommandTypes:
    """The command classes a scheduler may store, by class name (never by import path)."""

    def __init__(self, types: Iterable[type[Command]]) -> None:
        self._types: dict[str, type[Command]] = {}
        for cls in types:
            if not (isinstance(cls, type) and issubclass(cls, Command)):
                raise ConfigurationError(f"{cls!r} is not a Command class")
            known = self._types.setdefault(cls.__name__, cls)
            if known is not cls:
                raise ConfigurationError(
                    f"two scheduled command classes are named {cls.__name__}: "
                    f"{known.__module__} and {cls.__module__}"
                )

    def encode(self, command: Command) -> tuple[str, bytes]:
        name = type(command).__name__
        if self._types.get(name) is not type(command):
            raise ConfigurationError(
                f"{name} is not among this scheduler's commands; pass it in commands=[...]"
            )
        return name, _encoder.encode(command)

    def decode(self, name: str, data: bytes) -> Command:
        cls = self._types.get(name)
        if cls is None:
            raise ConfigurationError(f"a scheduled {name} command is due, but {name} is unknown")
        command: Command = msgspec.json.decode(data, type=cls)
        return command
