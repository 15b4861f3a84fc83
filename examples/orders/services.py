"""Stand-ins for the inventory, payment and notification services the order saga calls.

Each keeps a ledger of the effects it took, keyed by the idempotency key of
the call: a call repeated with a key seen before (after a crash, say) takes
no second effect and answers as the first did, as a real service given an
idempotency key does. Tests switch failures on (`fail`) or slow a service
down (`delay`). With a `path`, a ledger is kept in a JSON-lines file, so
that effects outlive the process that took them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Inventory",
    "Ledger",
    "Notifications",
    "OutOfStock",
    "PaymentDeclined",
    "Payments",
    "ServiceDown",
    "Services",
]


class ServiceDown(Exception):
    """The service did not answer."""


class OutOfStock(Exception):
    """Not enough stock to reserve."""


class PaymentDeclined(Exception):
    """The payment was refused."""


class Ledger:
    """The effects a service took, by idempotency key, in memory or in a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.calls = 0  # every call, repeats included
        self.effects: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.effects[entry["key"]] = entry

    def once(self, key: str, kind: str, **details: Any) -> dict[str, Any]:
        """Take the effect `kind` under `key` unless taken already; the effect either way."""
        with self._lock:
            self.calls += 1
            known = self.effects.get(key)
            if known is not None:
                return known
            entry = {"key": key, "kind": kind, **details}
            self.effects[key] = entry
            if self.path is not None:
                with self.path.open("a") as file:
                    file.write(json.dumps(entry) + "\n")
            return entry

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [entry for entry in self.effects.values() if entry["kind"] == kind]


@dataclass
class _Service:
    ledger: Ledger = field(default_factory=Ledger)
    fail: BaseException | None = None
    """Raised by the next calls of the service's action until set back to None."""
    delay: float = 0.0
    """Seconds the action takes before it answers."""

    def _act(self) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail


@dataclass
class Inventory(_Service):
    def reserve(self, key: str, order_id: str, items: list[dict[str, Any]]) -> str:
        self._act()
        entry = self.ledger.once(
            key, "reserved", order_id=order_id, items=items, reservation=uuid.uuid4().hex
        )
        return str(entry["reservation"])

    def release(self, key: str, reservation: str) -> None:
        self.ledger.once(key, "released", reservation=reservation)


@dataclass
class Payments(_Service):
    def charge(self, key: str, customer_id: str, amount: str) -> str:
        self._act()
        entry = self.ledger.once(
            key, "charged", customer_id=customer_id, amount=amount, payment=uuid.uuid4().hex
        )
        return str(entry["payment"])

    def refund(self, key: str, charge_key: str) -> None:
        """Refund what the charge made under `charge_key` took, if it took anything."""
        charged = self.ledger.effects.get(charge_key)
        if charged is not None:
            self.ledger.once(key, "refunded", payment=charged["payment"])


@dataclass
class Notifications(_Service):
    def send(self, key: str, customer_id: str, text: str) -> None:
        self._act()
        self.ledger.once(key, "sent", customer_id=customer_id, text=text)


@dataclass
class Services:
    """The three services, with their ledgers in `directory` when given."""

    inventory: Inventory
    payments: Payments
    notifications: Notifications

    @staticmethod
    def create(directory: Path | None = None) -> Services:
        def ledger(name: str) -> Ledger:
            return Ledger(None if directory is None else directory / f"{name}.jsonl")

        return Services(
            Inventory(ledger("inventory")),
            Payments(ledger("payments")),
            Notifications(ledger("notifications")),
        )
