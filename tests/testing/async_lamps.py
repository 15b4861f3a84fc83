"""The lamp application with async handlers over an async unit of work."""

from tests.testing.lamps import NOON, Install, Lamp, SwitchedOn, SwitchOn
from tidings import AsyncUnitOfWork, Router
from tidings.testing import Recorder

async_lamps = Router()


@async_lamps.handler
async def install(cmd: Install, uow: AsyncUnitOfWork) -> str:
    async with uow:
        await uow.repository(Lamp).add(Lamp.install(cmd.lamp_id, cmd.watts))
        await uow.commit()
    return cmd.lamp_id


@async_lamps.handler
async def switch_on(cmd: SwitchOn, uow: AsyncUnitOfWork) -> str:
    async with uow:
        lamp = await uow.repository(Lamp).get(cmd.lamp_id)
        if lamp is None:
            raise LookupError(f"no lamp {cmd.lamp_id}")
        result = lamp.switch_on(NOON)
        await uow.commit()
    return result


@async_lamps.handler
async def announce(event: SwitchedOn, announce: Recorder) -> None:
    announce(f"{event.lamp_id} is on")
