"""An application for the `tidings dlq` tests: a bus and projections that can be broken."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tests.projections.ledger import Deposited, Ledger
from tidings import Envelope, Event, MessageBus, Router
from tidings.dead_letters import SQLDeadLetters
from tidings.projections import OnFailure, Projection, handles
from tidings.retry import Retry
from tidings.sagas import Saga, Step, StepContext

broken = {"mail": True, "books": True, "refunds": True}
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


class Books(Ledger):
    """A ledger that cannot book to `bad` while `broken["books"]`; moves past such deposits."""

    retry = Retry(attempts=2, first_delay=0)
    on_failure = OnFailure.DEAD_LETTER

    @handles
    def deposited(
        self, event: Deposited, envelope: Envelope[Deposited], tx: object
    ) -> Awaitable[None] | None:
        if event.account == "bad" and broken["books"]:
            raise RuntimeError("cannot book to bad")
        return super().deposited(event, envelope, tx)


class ParkingBooks(Books):
    on_failure = OnFailure.PARK


def projections(store: Any) -> list[Projection]:
    """What `tidings dlq retry --projections tests.dead_letters.app:projections` loads."""
    schema = getattr(store, "schema", None)
    prefix = "" if schema is None else f"{schema}."
    return [Books(f"{prefix}books", "books"), ParkingBooks(f"{prefix}parking", "parking")]


def charge(context: StepContext) -> None:
    raise RuntimeError("card declined")


def refund(context: StepContext) -> None:
    if broken["refunds"]:
        raise ConnectionError("payments down")


def reserve(context: StepContext) -> None:
    """Reserving takes effect; only its undoing may be broken."""


sagas = [Saga("Checkout", [Step("reserve", reserve, refund), Step("charge", charge)])]
"""What `tidings dlq retry --sagas tests.dead_letters.app:sagas` loads: refunds may be down."""
