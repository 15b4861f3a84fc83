"""A tiny bank for the observability tests: a command, its event, a handler and a projection."""

from __future__ import annotations

from dataclasses import dataclass

from tidings import (
    Command,
    Envelope,
    Event,
    EventSourced,
    MessageBus,
    PerCall,
    Projection,
    Retry,
    Router,
    UnitOfWork,
    applies,
    handles,
)
from tidings.store import EventStore


@dataclass(frozen=True)
class Open(Command):
    account_id: str


@dataclass(frozen=True)
class Opened(Event, type_name="observability.Opened"):
    account_id: str


class Account(EventSourced):
    @applies
    def _opened(self, event: Opened) -> None:
        pass


def router(welcomed: list[str], fail_welcome: bool = False) -> Router:
    routes = Router()

    @routes.handler
    def open_account(command: Open, uow: UnitOfWork) -> None:
        with uow:
            account = Account(command.account_id)
            account.record(Opened(command.account_id))
            uow.repository(Account).add(account)
            uow.commit()

    @routes.handler(retry=Retry(attempts=2, first_delay=0))
    def welcome(event: Opened) -> None:
        if fail_welcome:
            raise RuntimeError(f"cannot welcome {event.account_id}")
        welcomed.append(event.account_id)

    return routes


def bank(store: EventStore, welcomed: list[str], fail_welcome: bool = False) -> MessageBus:
    return MessageBus(
        router(welcomed, fail_welcome),
        dependencies={"uow": PerCall(lambda: UnitOfWork(store))},
        retry_waits=False,
    )


class Accounts(Projection[object]):
    """Counts accounts; fails on any account named "bad" (parked after two attempts)."""

    name = "observability_accounts"
    retry = Retry(attempts=2, first_delay=0)

    def __init__(self) -> None:
        self.seen: list[str] = []

    @handles
    def opened(self, event: Opened, envelope: Envelope[Opened], tx: object) -> None:
        if event.account_id == "bad":
            raise ValueError("bad account")
        self.seen.append(event.account_id)
