"""A worker module to run as `python -m tests.main_module_app`: it prints its handler's name."""

from __future__ import annotations

from dataclasses import dataclass

from tidings import Event, Router

router = Router()


@dataclass(frozen=True)
class Pinged(Event):
    pass


@router.handler
def on_pinged(event: Pinged) -> None:
    """Nothing to do: only the name matters."""


if __name__ == "__main__":
    print(router.specs[0].name)
