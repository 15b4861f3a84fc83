import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tidings import (
    Command,
    ConfigurationError,
    Envelope,
    Event,
    MessageBus,
    PerCall,
    Query,
    Retry,
    Router,
)


@dataclass(frozen=True)
class Greet(Command):
    name: str


@dataclass(frozen=True)
class Greeted(Event):
    name: str


@dataclass(frozen=True)
class Waved(Event):
    name: str


@dataclass(frozen=True)
class CountGreetings(Query):
    pass


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


def test_dependencies_are_injected_by_name() -> None:
    router = Router()

    @router.handler
    def greet(cmd: Greet, prefix: str) -> str:
        return f"{prefix} {cmd.name}"

    assert MessageBus(router, dependencies={"prefix": "hi"}).handle(Greet("ann")) == "hi ann"


def test_dependencies_are_injected_by_annotation() -> None:
    router = Router()

    @router.handler
    def greet(cmd: Greet, greeter: Greeter) -> str:
        return greeter.greet(cmd.name)

    bus = MessageBus(router, dependencies={Greeter: Greeter()})
    assert bus.handle(Greet("bo")) == "hello bo"


def test_a_name_wins_over_an_annotation() -> None:
    router = Router()

    class Loud(Greeter):
        def greet(self, name: str) -> str:
            return f"HELLO {name.upper()}"

    @router.handler
    def greet(cmd: Greet, greeter: Greeter) -> str:
        return greeter.greet(cmd.name)

    bus = MessageBus(router, dependencies={Greeter: Greeter(), "greeter": Loud()})
    assert bus.handle(Greet("bo")) == "HELLO BO"


def test_parameters_with_defaults_need_no_dependency() -> None:
    router = Router()

    @router.handler
    def greet(cmd: Greet, punctuation: str = "!") -> str:
        return cmd.name + punctuation

    assert MessageBus(router).handle(Greet("cy")) == "cy!"


def test_the_envelope_is_passed_to_a_parameter_annotated_with_it() -> None:
    router = Router()
    seen: list[Envelope[Any]] = []

    @router.handler
    def greet(cmd: Greet, envelope: Envelope[Greet]) -> None:
        seen.append(envelope)

    MessageBus(router).handle(Greet("di"), headers={"user": "u1"})
    assert seen[0].message == Greet("di")
    assert seen[0].headers == {"user": "u1"}


def test_a_handler_gets_a_fresh_dependency_and_its_envelope_on_every_call() -> None:
    router = Router()
    seen: list[tuple[object, Envelope[Any]]] = []

    @router.handler
    def greet(cmd: Greet, envelope: Envelope[Greet], scratch: object) -> None:
        seen.append((scratch, envelope))

    bus = MessageBus(router, dependencies={"scratch": PerCall(object)})
    bus.handle(Greet("ed"))
    given = Envelope.new(Greet("flo"))
    bus.handle(given)
    (first_scratch, first_envelope), (second_scratch, second_envelope) = seen
    assert first_scratch is not second_scratch
    assert first_envelope.message == Greet("ed")
    assert second_envelope is given


def test_a_missing_dependency_fails_at_start_up_naming_it() -> None:
    router = Router()

    @router.handler
    def notify(event: Greeted, send_mail: Callable[..., None]) -> None:
        send_mail(event.name)

    with pytest.raises(ConfigurationError, match="notify needs 'send_mail'"):
        MessageBus(router)


def test_a_second_command_handler_fails_at_start_up() -> None:
    router = Router()

    @router.handler
    def one(cmd: Greet) -> None: ...

    @router.handler
    def two(cmd: Greet) -> None: ...

    with pytest.raises(ConfigurationError, match="command Greet has two handlers"):
        MessageBus(router)


def test_a_second_query_handler_fails_at_start_up() -> None:
    router = Router()
    router.handler(lambda q: 1, message=CountGreetings)
    router.handler(lambda q: 2, message=CountGreetings)
    with pytest.raises(ConfigurationError, match="query CountGreetings has two handlers"):
        MessageBus(router)


def test_a_handler_without_a_message_annotation_is_refused() -> None:
    def untyped(cmd, uow):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ConfigurationError, match="annotate the first parameter"):
        Router().handler(untyped)


def test_a_handler_for_a_class_that_is_not_a_message_is_refused() -> None:
    def wrong(cmd: dict[str, str]) -> None: ...

    with pytest.raises(ConfigurationError, match="is not a Command, Event or Query"):
        Router().handler(wrong)  # type: ignore[type-var]  # mypy refuses it too


def test_a_handler_without_parameters_is_refused() -> None:
    def nothing() -> None: ...

    with pytest.raises(ConfigurationError, match="first positional parameter"):
        Router().handler(nothing)  # type: ignore[arg-type]  # mypy refuses it too


def test_a_union_annotation_registers_for_each_member() -> None:
    router = Router()
    seen: list[Event] = []

    @router.handler
    def either(event: Greeted | Waved) -> None:
        seen.append(event)

    bus = MessageBus(router)
    bus.handle(Greeted("a"))
    bus.handle(Waved("b"))
    assert seen == [Greeted("a"), Waved("b")]


def test_retry_names_exception_classes() -> None:
    with pytest.raises(ValueError, match="exception classes"):
        Retry(on=("ConcurrencyError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exception classes"):
        Retry(on=())


def test_routers_can_be_combined() -> None:
    orders, shipping = Router(), Router()
    seen: list[str] = []

    @orders.handler
    def greet(cmd: Greet) -> str:
        return cmd.name

    @shipping.handler
    def log(event: Greeted) -> None:
        seen.append(event.name)

    orders.include(shipping)
    bus = MessageBus(orders)
    assert bus.handle(Greet("x")) == "x"
    bus.handle(Greeted("y"))
    assert seen == ["y"]


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        Retry(first_delay=-1)


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = Retry(attempts=10, first_delay=0.1, max_delay=0.5, jitter=False)
    assert [policy.delay(n) for n in range(1, 5)] == [0.1, 0.2, 0.4, 0.5]
    jittered = Retry(first_delay=0.1, max_delay=0.5)
    assert all(0 <= jittered.delay(3) <= 0.4 for _ in range(100))


ROOT = Path(__file__).resolve().parents[1]


def test_a_handler_is_named_for_its_module_when_that_module_runs_as_main() -> None:
    from tests import main_module_app

    ran = subprocess.run(
        [sys.executable, "-m", "tests.main_module_app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == main_module_app.router.specs[0].name
    assert ran.stdout.strip() == "tests.main_module_app.on_pinged"
