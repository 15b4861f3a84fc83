"""An application for `--app`: a codec with an upcaster, and a bus in blocking and async form.

The stored shape of `Renamed` v1 has `name`; v2 calls it `title`, and the
codec's upcaster turns one into the other. `Garbled` v1 has an upcaster that
raises, as a buggy one might.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidings import (
    AsyncEventStore,
    AsyncMessageBus,
    AsyncSQLDeadLetters,
    Codec,
    Event,
    EventStore,
    MessageBus,
    Router,
    SQLDeadLetters,
)

broken = {"mail": True}
mailed: list[str] = []


@dataclass(frozen=True)
class Renamed(Event, type_name="cli_app.Renamed", version=2):
    title: str


@dataclass(frozen=True)
class Garbled(Event, type_name="cli_app.Garbled", version=2):
    text: str


CODEC = Codec(Renamed, Garbled)


@CODEC.upcaster("cli_app.Renamed", from_version=1)
def _title(data: dict[str, Any]) -> dict[str, Any]:
    return {"title": data.pop("name")}


@CODEC.upcaster("cli_app.Garbled", from_version=1)
def _broken(data: dict[str, Any]) -> dict[str, Any]:
    return {"text": data["missing"]}


router = Router()


@router.handler
def mail_on_rename(event: Renamed) -> None:
    if broken["mail"]:
        raise ConnectionError("mail server down")
    mailed.append(event.title)


def bus(store: EventStore) -> MessageBus:
    return MessageBus(router, retry_waits=False, dead_letters=SQLDeadLetters(store, codec=CODEC))


async def async_bus(store: AsyncEventStore) -> AsyncMessageBus:
    return AsyncMessageBus(
        router, retry_waits=False, dead_letters=AsyncSQLDeadLetters(store, codec=CODEC)
    )


def sync_factory_of_an_async_bus(store: EventStore) -> AsyncMessageBus:
    return AsyncMessageBus(router)


async def async_factory_of_something_else(store: AsyncEventStore) -> str:
    return "not a bus"
