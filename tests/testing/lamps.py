"""A lamp, its messages and handlers: the application the testing kit is tried on."""

from dataclasses import dataclass
from datetime import UTC, datetime

from tidings import (
    Aggregate,
    Command,
    DomainError,
    Event,
    EventSourced,
    Router,
    UnitOfWork,
    applies,
)
from tidings.testing import Recorder

NOON = datetime(2030, 1, 1, 12, tzinfo=UTC)


class LampBroken(DomainError):
    pass


@dataclass(frozen=True)
class Installed(Event, type_name="testing.Installed"):
    lamp_id: str
    watts: int


@dataclass(frozen=True)
class SwitchedOn(Event, type_name="testing.SwitchedOn"):
    lamp_id: str
    at: datetime


@dataclass(frozen=True)
class Burnt(Event, type_name="testing.Burnt"):
    lamp_id: str


class Lamp(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.watts = 0
        self.on = False
        self.burnt = False

    @classmethod
    def install(cls, lamp_id: str, watts: int) -> "Lamp":
        lamp = cls(lamp_id)
        lamp.record(Installed(lamp_id, watts))
        return lamp

    def switch_on(self, at: datetime) -> str:
        if self.burnt:
            raise LampBroken(f"lamp {self.id} is burnt out")
        if self.on:
            return "already on"
        self.record(SwitchedOn(self.id, at))
        if self.watts > 100:
            self.record(Burnt(self.id))
        return "switched on"

    @applies
    def _installed(self, event: Installed) -> None:
        self.watts = event.watts

    @applies
    def _switched_on(self, event: SwitchedOn) -> None:
        self.on = True

    @applies
    def _burnt(self, event: Burnt) -> None:
        self.burnt = True


class Shelf(Aggregate):
    """A state-stored aggregate."""

    def __init__(self, shelf_id: str, watts: int) -> None:
        self.id = shelf_id
        self.watts = watts

    def add_lamp(self, lamp_id: str) -> None:
        self.record(Installed(lamp_id, self.watts))


# AggregateScenario


@dataclass(frozen=True)
class Install(Command):
    lamp_id: str
    watts: int


@dataclass(frozen=True)
class SwitchOn(Command):
    lamp_id: str


@dataclass(frozen=True)
class Announced(Event, type_name="testing.Announced"):
    lamp_id: str


lamps = Router()


@lamps.handler
def install(cmd: Install, uow: UnitOfWork) -> str:
    with uow:
        uow.repository(Lamp).add(Lamp.install(cmd.lamp_id, cmd.watts))
        uow.commit()
    return cmd.lamp_id


@lamps.handler
def switch_on(cmd: SwitchOn, uow: UnitOfWork) -> str:
    with uow:
        lamp = uow.repository(Lamp).get(cmd.lamp_id)
        if lamp is None:
            raise LookupError(f"no lamp {cmd.lamp_id}")
        result = lamp.switch_on(NOON)
        uow.commit()
    return result


@lamps.handler
def announce(event: SwitchedOn, announce: Recorder) -> None:
    announce(f"{event.lamp_id} is on")
