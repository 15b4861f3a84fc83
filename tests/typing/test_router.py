"""`Router.handler` as mypy sees it: every form of registering type-checks, a wrong one not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.typing.checking import mypy_errors

PRELUDE = """
from dataclasses import dataclass
from tidings import Command, Event, Retry, Router

@dataclass(frozen=True)
class Greet(Command):
    name: str

@dataclass(frozen=True)
class Greeted(Event):
    name: str

@dataclass(frozen=True)
class Waved(Event):
    name: str

router = Router()
"""


def test_every_form_of_registration_type_checks_and_keeps_the_signature(tmp_path: Path) -> None:
    source = (
        PRELUDE
        + """
@router.handler
def greet(cmd: Greet, greeting: str) -> str:
    return greeting + cmd.name

@router.handler(retry=Retry(attempts=3))
async def on_greeted(event: Greeted) -> None: ...

@router.handler(message=Greeted)
def on_any_event(event: Event) -> None: ...

@router.handler
def on_either(event: Greeted | Waved) -> None: ...

router.handler(lambda event: None, message=Waved)
router.handler(on_any_event, message=Waved, retry=Retry(attempts=2))

reply: str = greet(Greet("ada"), greeting="hello ")
"""
    )
    assert mypy_errors(source, tmp_path) == []


@pytest.mark.parametrize(
    ("registration", "refusal"),
    [
        pytest.param(
            "@router.handler\ndef wrong(cmd: int) -> None: ...",
            'Value of type variable "M" of "handler" of "Router" cannot be "int"',
            id="first-parameter-not-a-message",
        ),
        pytest.param(
            "@router.handler(message=Greeted)\ndef wrong(cmd: Greet) -> None: ...",
            'has incompatible type "Callable[[Greet], None]"; expected "Callable[[Greeted], None]"',
            id="message-the-handler-does-not-take",
        ),
        pytest.param(
            "router.handler(lambda event: None, message=int)",
            'Argument "message" to "handler" of "Router" has incompatible type "type[int]"',
            id="message-not-a-message-class",
        ),
        pytest.param(
            "@router.handler\ndef wrong() -> None: ...",
            'Argument 1 to "handler" of "Router" has incompatible type',
            id="no-parameter",
        ),
        pytest.param(
            "@router.handler(retry=3)\ndef wrong(cmd: Greet) -> None: ...",
            'No overload variant of "handler" of "Router" matches',
            id="retry-not-a-retry",
        ),
        pytest.param(
            "@router.handler\ndef greet(cmd: Greet) -> str: return cmd.name\n\ngreet(Greeted('x'))",
            'Argument 1 to "greet" has incompatible type "Greeted"',
            id="signature-kept-after-registration",
        ),
    ],
)
def test_a_wrong_registration_is_refused(registration: str, refusal: str, tmp_path: Path) -> None:
    errors = mypy_errors(PRELUDE + registration + "\n", tmp_path)
    assert errors, "mypy accepted it"
    assert any(refusal in error for error in errors), errors
