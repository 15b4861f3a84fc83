"""The application whose dead letters are replayed: an event, and a handler with an effect.

The handler's effect is a row per event id in the table `replayed`, counting
deliveries; a repeat adds a delivery, not a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.projections.ledger import _run
from tidings import Envelope, Event, MessageBus, Router
from tidings.dead_letters import SQLDeadLetters


@dataclass(frozen=True)
class Ordered(Event, type_name="reliability.Ordered"):
    order: int


def replayed_table(store: Any) -> str:
    schema = getattr(store, "schema", None)
    return "replayed" if schema is None else f"{schema}.replayed"


def prepare(store: Any) -> None:
    with store.transaction() as tx:
        table = replayed_table(store)
        _run(tx, (f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, calls INT)", ()))


def replay_bus(store: Any) -> MessageBus:
    """The bus whose handler `replay` the letters were recorded for."""
    table = replayed_table(store)
    router = Router()

    @router.handler
    def replay(event: Ordered, envelope: Envelope[Ordered]) -> None:
        with store.transaction() as tx:
            _run(
                tx,
                (
                    f"INSERT INTO {table} (id, calls) VALUES (?, 1) ON CONFLICT (id) "
                    f"DO UPDATE SET calls = {table}.calls + 1",
                    (str(envelope.message_id),),
                ),
            )

    return MessageBus(router, retry_waits=False, dead_letters=SQLDeadLetters(store))


HANDLER = f"{__name__}.replay_bus.<locals>.replay"
"""The full name of the handler the letters are recorded for."""
