"""An application for the `tidings dlq retry` tests: a bus whose mail handler can be broken."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidings import Event, MessageBus, Router
from tidings.dead_letters import SQLDeadLetters

broken = {"mail": True}
delivered: list[str] = []
router = Router()


@dataclass(frozen=True)
class Welcomed(Event, type_name="test.dlq.Welcomed"):
    user_id: str


@router.handler
def send_welcome_mail(event: Welcomed) -> None:
    if broken["mail"]:
        raise ConnectionError("mail server down")
    delivered.append(event.user_id)


def bus(store: Any) -> MessageBus:
    """The composition root `tidings dlq retry --app tests.dead_letters.app:bus` calls."""
    return MessageBus(router, retry_waits=False, dead_letters=SQLDeadLetters(store))


def memory_bus(store: Any) -> MessageBus:
    return MessageBus(router, retry_waits=False)
