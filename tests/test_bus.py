import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tidings import (
    AsyncMemoryStore,
    AsyncMessageBus,
    AsyncUnitOfWork,
    CascadeLimitExceeded,
    Command,
    ConcurrencyError,
    DeadLetters,
    DomainError,
    Envelope,
    Event,
    EventSourced,
    LogMessages,
    MemoryStore,
    Message,
    MessageBus,
    Middleware,
    NoHandler,
    PerCall,
    Query,
    Retry,
    Router,
    UnitOfWork,
    applies,
)


class Overdrawn(DomainError):
    pass


@dataclass(frozen=True)
class Open(Command):
    account: str


@dataclass(frozen=True)
class Withdraw(Command):
    account: str
    amount: int


@dataclass(frozen=True)
class Greet(Command):
    pass


@dataclass(frozen=True)
class Balance(Query):
    account: str


@dataclass(frozen=True)
class Opened(Event, type_name="bus.Opened"):
    account: str


@dataclass(frozen=True)
class Withdrawn(Event, type_name="bus.Withdrawn"):
    account: str
    amount: int


@dataclass(frozen=True)
class Audited(Event, type_name="bus.Audited"):
    account: str


class Account(EventSourced):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    @classmethod
    def open(cls, id: str) -> "Account":
        account = cls(id)
        account.record(Opened(id))
        return account

    def withdraw(self, amount: int) -> None:
        if amount > self.balance + 100:
            raise Overdrawn(f"{self.id} cannot withdraw {amount}")
        self.record(Withdrawn(self.id, amount))

    @applies
    def _opened(self, event: Opened) -> None:
        self.balance = 0

    @applies
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount


def banking(log: list[str]) -> Router:
    router = Router()

    @router.handler
    def open_account(cmd: Open, uow: UnitOfWork) -> str:
        with uow:
            uow.repository(Account).add(Account.open(cmd.account))
            uow.commit()
        log.append(f"opened {cmd.account}")
        return cmd.account

    @router.handler
    def withdraw(cmd: Withdraw, uow: UnitOfWork) -> int:
        with uow:
            account = uow.repository(Account).get(cmd.account)
            assert account is not None
            account.withdraw(cmd.amount)
            uow.commit()
        log.append(f"withdrew {cmd.amount}")
        return account.balance

    @router.handler
    def balance(query: Balance, uow: UnitOfWork) -> int:
        with uow:
            account = uow.repository(Account).get(query.account)
            return 0 if account is None else account.balance

    return router


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def make_bus(store: MemoryStore, log: list[str], *extra: Router, **options: Any) -> MessageBus:
    return MessageBus(
        [banking(log), *extra],
        dependencies={"uow": UnitOfWork(store), "log": log},
        retry_waits=False,
        **options,
    )


def test_a_command_returns_its_handlers_result(store: MemoryStore) -> None:
    bus = make_bus(store, [])
    assert bus.handle(Open("a1")) == "a1"
    assert bus.handle(Withdraw("a1", 30)) == -30


def test_a_query_returns_its_handlers_result(store: MemoryStore) -> None:
    bus = make_bus(store, [])
    bus.handle(Open("a1"))
    bus.handle(Withdraw("a1", 5))
    assert bus.handle(Balance("a1")) == -5


def test_a_command_error_reaches_the_caller_unchanged_and_nothing_is_committed(
    store: MemoryStore,
) -> None:
    handled: list[Event] = []
    listener = Router()

    @listener.handler
    def on_withdrawn(event: Withdrawn) -> None:
        handled.append(event)

    bus = make_bus(store, [], listener)
    bus.handle(Open("a1"))
    with pytest.raises(Overdrawn, match="a1 cannot withdraw 500") as raised:
        bus.handle(Withdraw("a1", 500))
    assert type(raised.value) is Overdrawn
    assert [r.type for r in store.read_stream("Account-a1")] == ["bus.Opened"]
    assert handled == []


def test_a_command_without_handler_is_an_error_naming_it() -> None:
    @dataclass(frozen=True)
    class Unhandled(Command):
        pass

    with pytest.raises(NoHandler, match="Unhandled"):
        MessageBus(Router()).handle(Unhandled())


def test_an_event_without_handlers_is_fine() -> None:
    assert MessageBus(Router()).handle(Audited("a1")) is None


def test_a_non_message_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="got str"):
        MessageBus(Router()).handle("withdraw 5")  # type: ignore[arg-type]


def test_events_are_handled_after_the_command_in_order(store: MemoryStore) -> None:
    log: list[str] = []
    listener = Router()

    @listener.handler
    def first(event: Opened, log: list[str]) -> None:
        log.append("first handler")

    @listener.handler
    def second(event: Opened, log: list[str]) -> None:
        log.append("second handler")

    bus = make_bus(store, log, listener)
    bus.handle(Open("a1"))
    assert log == ["opened a1", "first handler", "second handler"]


def test_events_raised_while_handling_events_are_queued_not_recursed(store: MemoryStore) -> None:
    log: list[str] = []
    listener = Router()

    @listener.handler
    def open_savings(event: Opened, uow: UnitOfWork, log: list[str]) -> None:
        if event.account.startswith("savings"):
            return
        with uow:
            uow.repository(Account).add(Account.open(f"savings-{event.account}"))
            uow.commit()
        log.append(f"savings for {event.account} committed")

    @listener.handler
    def audit(event: Opened, log: list[str]) -> None:
        log.append(f"audit {event.account}")

    bus = make_bus(store, log, listener)
    bus.handle(Open("a1"))
    # The savings account's Opened is handled after every handler of the first Opened.
    assert log == [
        "opened a1",
        "savings for a1 committed",
        "audit a1",
        "audit savings-a1",
    ]


def test_correlation_and_causation_ids_follow_the_chain(store: MemoryStore) -> None:
    seen: dict[str, Envelope[Message]] = {}
    listener = Router()

    @listener.handler
    def open_savings(event: Opened, uow: UnitOfWork, envelope: Envelope[Opened]) -> None:
        seen[event.account] = envelope
        if not event.account.startswith("savings"):
            with uow:
                uow.repository(Account).add(Account.open(f"savings-{event.account}"))
                uow.commit()

    command = Envelope.new(Open("a1"))
    make_bus(store, [], listener).handle(command)
    first, second = seen["a1"], seen["savings-a1"]
    assert first.correlation_id == second.correlation_id == command.message_id
    assert first.causation_id == command.message_id
    assert second.causation_id == first.message_id
    stored = store.read_all()
    assert [r.causation_id for r in stored] == [command.message_id, first.message_id]
    assert (first.stream, first.version, first.position) == ("Account-a1", 1, 1)


def test_a_given_correlation_id_is_kept(store: MemoryStore) -> None:
    conversation = uuid4()
    make_bus(store, []).handle(Open("a1"), correlation_id=conversation)
    assert store.read_all()[0].correlation_id == conversation


def test_a_bare_commands_envelope_is_the_cause_of_what_it_commits(store: MemoryStore) -> None:
    seen: list[Envelope[Message]] = []
    listener = Router()

    @listener.handler
    def open_with_envelope(cmd: Greet, uow: UnitOfWork, envelope: Envelope[Greet]) -> None:
        seen.append(envelope)
        with uow:
            uow.repository(Account).add(Account.open("a1"))
            uow.commit()

    @listener.handler
    def on_opened(event: Opened, envelope: Envelope[Opened]) -> None:
        seen.append(envelope)

    MessageBus([listener], dependencies={"uow": UnitOfWork(store)}).handle(Greet())
    command, event = seen
    assert type(command) is Envelope
    assert command.correlation_id == command.message_id
    (record,) = store.read_all()
    assert record.causation_id == event.causation_id == command.message_id
    assert record.correlation_id == event.correlation_id == command.message_id


def test_what_a_handler_commits_without_reading_its_envelope_is_still_traced(
    store: MemoryStore,
) -> None:
    seen: list[Envelope[Message]] = []
    listener = Router()

    @listener.handler
    def on_opened(event: Opened, envelope: Envelope[Opened]) -> None:
        seen.append(envelope)

    make_bus(store, [], listener).handle(Open("a1"))
    (record,) = store.read_all()
    (event,) = seen
    # Nothing read the command's envelope but the unit of work, which gave it an id.
    assert record.causation_id is not None
    assert record.correlation_id == record.causation_id == event.causation_id


def test_an_explicit_envelope_reaches_handlers_and_middleware_as_given() -> None:
    seen: list[Envelope[Message]] = []
    router = Router()

    @router.handler
    def greet(cmd: Greet, envelope: Envelope[Greet]) -> None:
        seen.append(envelope)

    def record(envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]) -> Any:
        seen.append(envelope)
        return call_next(envelope)

    given = Envelope.new(Greet(), headers={"user": "u1"})
    MessageBus(router, middleware=[record]).handle(given)
    assert seen[0] is given
    assert seen[1] is given


def test_middleware_and_handler_see_one_envelope_of_a_bare_message() -> None:
    seen: list[Envelope[Message]] = []
    router = Router()

    @router.handler
    def greet(cmd: Greet, envelope: Envelope[Greet]) -> None:
        seen.append(envelope)

    def record(envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]) -> Any:
        seen.append(envelope)
        return call_next(envelope)

    MessageBus(router, middleware=[record]).handle(Greet(), headers={"user": "u1"})
    outer, inner = seen
    assert type(outer) is Envelope
    assert inner is outer
    assert outer.headers == {"user": "u1"}


def test_middleware_may_hand_on_an_envelope_of_its_own() -> None:
    seen: list[Envelope[Message]] = []
    router = Router()

    @router.handler
    def greet(cmd: Greet, envelope: Envelope[Greet]) -> None:
        seen.append(envelope)

    def stamp(envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]) -> Any:
        return call_next(Envelope.new(envelope.message, headers={"stamped": "yes"}))

    MessageBus(router, middleware=[stamp]).handle(Greet())
    assert seen[0].headers == {"stamped": "yes"}


def test_every_handler_of_a_bare_event_sees_the_same_envelope(store: MemoryStore) -> None:
    seen: list[Envelope[Message]] = []
    listener = Router()

    @listener.handler
    def first(event: Audited) -> None:
        raise RuntimeError("first fails")

    @listener.handler
    def second(event: Audited, envelope: Envelope[Audited]) -> None:
        seen.append(envelope)

    @listener.handler
    def third(event: Audited, envelope: Envelope[Audited]) -> None:
        seen.append(envelope)

    bus = make_bus(store, [], listener, retry=Retry(attempts=1))
    bus.handle(Audited("a1"))
    (letter,) = bus.dead_letters.list()
    assert letter.envelope is seen[0] is seen[1]


def test_a_lazily_built_envelope_is_dated_when_the_message_was_handed_over(
    store: MemoryStore,
) -> None:
    started: list[datetime] = []
    listener = Router()

    @listener.handler(retry=Retry(attempts=1))
    def slow_then_fails(event: Audited) -> None:
        started.append(datetime.now(UTC))
        time.sleep(0.02)
        raise RuntimeError("too slow")

    bus = make_bus(store, [], listener)
    before = datetime.now(UTC)
    bus.handle(Audited("a1"))
    # The dead letter built the envelope after the handler's sleep; its date is still the
    # moment of hand-over (datetimes keep microseconds, so compare at that grain).
    (letter,) = bus.dead_letters.list()
    assert before - timedelta(microseconds=1) <= letter.envelope.occurred_at <= started[0]


def test_a_retried_command_hands_on_only_what_its_last_attempt_committed(
    store: MemoryStore,
) -> None:
    handled: list[str] = []
    router = Router()

    @router.handler(retry=Retry(attempts=2, on=(ConcurrencyError,)))
    def open_twice(cmd: Open, uow: UnitOfWork) -> None:
        attempt = len(store.read_all()) + 1
        with uow:
            uow.repository(Account).add(Account.open(f"{cmd.account}-{attempt}"))
            uow.commit()
        if attempt == 1:
            raise ConcurrencyError("lost a race after committing")

    @router.handler
    def on_opened(event: Opened) -> None:
        handled.append(event.account)

    bus = MessageBus(
        router, dependencies={"uow": PerCall(lambda: UnitOfWork(store))}, retry_waits=False
    )
    bus.handle(Open("a"))
    assert [r.stream for r in store.read_all()] == ["Account-a-1", "Account-a-2"]
    assert handled == ["a-2"]


def test_a_failing_event_handler_is_retried_logged_and_dead_lettered(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    after: list[str] = []
    listener = Router()

    @listener.handler
    def flaky(event: Opened) -> None:
        calls.append(1)
        raise ConnectionError("mail server down")

    @listener.handler
    def other(event: Opened) -> None:
        after.append(event.account)

    bus = make_bus(store, [], listener)
    with caplog.at_level(logging.WARNING, logger="tidings.bus"):
        assert bus.handle(Open("a1")) == "a1"
    assert len(calls) == 3
    assert after == ["a1"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "flaky" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    (letter,) = bus.dead_letters.list()
    assert letter.handler.endswith("flaky")
    assert letter.attempts == 3
    assert letter.error == "ConnectionError: mail server down"
    assert letter.envelope.message == Opened("a1")
    assert letter.correlation_id == store.read_all()[0].correlation_id
    assert "mail server down" in letter.traceback


def test_a_handler_that_recovers_is_not_dead_lettered(store: MemoryStore) -> None:
    calls: list[int] = []
    listener = Router()

    @listener.handler(retry=Retry(attempts=5))
    def recovers(event: Opened) -> None:
        calls.append(1)
        if len(calls) < 4:
            raise TimeoutError

    bus = make_bus(store, [], listener)
    bus.handle(Open("a1"))
    assert len(calls) == 4
    assert bus.dead_letters.list() == []


def test_retry_waits_back_off_between_attempts(store: MemoryStore) -> None:
    stamps: list[float] = []
    listener = Router()

    @listener.handler(retry=Retry(attempts=3, first_delay=0.05, jitter=False))
    def slow(event: Opened) -> None:
        import time

        stamps.append(time.monotonic())
        raise RuntimeError

    bus = MessageBus([banking([]), listener], dependencies={"uow": UnitOfWork(store)})
    bus.handle(Open("a1"))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1


def test_a_command_is_not_retried_by_default(store: MemoryStore) -> None:
    calls: list[int] = []
    router = Router()

    @router.handler
    def fails(cmd: Greet) -> None:
        calls.append(1)
        raise ConcurrencyError("lost a race")

    with pytest.raises(ConcurrencyError):
        MessageBus(router, retry_waits=False).handle(Greet())
    assert calls == [1]


def test_a_command_retried_on_a_concurrency_error_runs_again_on_fresh_state(
    store: MemoryStore,
) -> None:
    attempts: list[int] = []
    racing = Router()

    @racing.handler(retry=Retry(attempts=3, on=(ConcurrencyError,)))
    def withdraw_racing(cmd: Withdraw, uow: UnitOfWork) -> int:
        attempts.append(1)
        with uow:
            account = uow.repository(Account).get(cmd.account)
            assert account is not None
        if len(attempts) == 1:  # another writer commits between this read and the write
            with UnitOfWork(store) as rival:
                other = rival.repository(Account).get(cmd.account)
                assert other is not None
                other.withdraw(10)
                rival.commit()
        with uow:
            account.withdraw(cmd.amount)
            uow.repository(Account).add(account)
            uow.commit()
        return account.balance

    bus = MessageBus(
        [racing],
        dependencies={"uow": UnitOfWork(store)},
        retry_waits=False,
    )
    with UnitOfWork(store) as setup:
        setup.repository(Account).add(Account.open("a1"))
        setup.commit()
    assert bus.handle(Withdraw("a1", 5)) == -15
    assert len(attempts) == 2
    assert [r.type for r in store.read_stream("Account-a1")] == [
        "bus.Opened",
        "bus.Withdrawn",
        "bus.Withdrawn",
    ]


def test_a_command_retry_gives_up_after_its_attempts(store: MemoryStore) -> None:
    calls: list[int] = []
    router = Router()

    @router.handler(retry=Retry(attempts=3, on=(ConcurrencyError,)))
    def always_loses(cmd: Greet) -> None:
        calls.append(1)
        raise ConcurrencyError("lost again")

    with pytest.raises(ConcurrencyError, match="lost again"):
        MessageBus(router, retry_waits=False).handle(Greet())
    assert len(calls) == 3


def test_an_error_outside_retry_on_is_not_retried(store: MemoryStore) -> None:
    calls: list[int] = []
    listener = Router()

    @listener.handler(retry=Retry(attempts=5, on=(TimeoutError,)))
    def broken(event: Opened) -> None:
        calls.append(1)
        raise ValueError("a bug, not a hiccup")

    bus = make_bus(store, [], listener)
    bus.handle(Open("a1"))
    assert len(calls) == 1
    (letter,) = bus.dead_letters.list()
    assert letter.attempts == 1


def test_a_dead_letter_can_be_retried_once_the_cause_is_fixed(store: MemoryStore) -> None:
    broken = [True]
    delivered: list[str] = []
    listener = Router()

    @listener.handler
    def deliver(event: Opened) -> None:
        if broken[0]:
            raise RuntimeError("down")
        delivered.append(event.account)

    bus = make_bus(store, [], listener)
    bus.handle(Open("a1"))
    (letter,) = bus.dead_letters.list()
    assert bus.retry_dead_letter(letter.id) is False
    (again,) = bus.dead_letters.list()
    assert again.id != letter.id and again.attempts == 3
    broken[0] = False
    assert bus.retry_dead_letter(again.id) is True
    assert delivered == ["a1"]
    assert bus.dead_letters.list() == []


def test_a_handler_for_the_event_base_class_receives_every_event(store: MemoryStore) -> None:
    everything: list[str] = []
    listener = Router()

    @listener.handler
    def audit_all(event: Event) -> None:
        everything.append(type(event).__name__)

    bus = make_bus(store, [], listener)
    bus.handle(Open("a1"))
    bus.handle(Withdraw("a1", 1))
    assert everything == ["Opened", "Withdrawn"]


def test_a_runaway_cascade_stops_with_a_clear_error(store: MemoryStore) -> None:
    listener = Router()

    @listener.handler
    def again(event: Withdrawn, uow: UnitOfWork) -> None:
        with uow:
            account = uow.repository(Account).get(event.account)
            assert account is not None
            account.withdraw(0)
            uow.commit()

    bus = make_bus(store, [], listener, max_cascade=50)
    bus.handle(Open("a1"))
    with pytest.raises(CascadeLimitExceeded, match="more than 50 messages"):
        bus.handle(Withdraw("a1", 0))


def test_middleware_wraps_every_message_outermost_first(store: MemoryStore) -> None:
    trail: list[str] = []

    def outer(envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]) -> Any:
        trail.append(f"outer>{type(envelope.message).__name__}")
        result = call_next(envelope)
        trail.append(f"outer<{type(envelope.message).__name__}")
        return result

    def inner(envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]) -> Any:
        trail.append(f"inner {type(envelope.message).__name__}")
        return call_next(envelope)

    bus = make_bus(store, [], middleware=[outer, inner])
    assert bus.handle(Open("a1")) == "a1"
    assert trail == [
        "outer>Open",
        "inner Open",
        "outer<Open",
        "outer>Opened",
        "inner Opened",
        "outer<Opened",
    ]


def test_middleware_added_later_wraps_what_was_given_and_a_bus_without_any(
    store: MemoryStore,
) -> None:
    trail: list[str] = []

    def named(name: str) -> Middleware:
        def layer(
            envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Any]
        ) -> Any:
            trail.append(f"{name} {type(envelope.message).__name__}")
            return call_next(envelope)

        return layer

    bus = make_bus(store, [], middleware=[named("given")])
    bus.add_middleware(named("added"))
    assert bus.handle(Open("a1")) == "a1"
    assert trail == ["added Open", "given Open", "added Opened", "given Opened"]
    trail.clear()
    bare = make_bus(store, [])
    bare.add_middleware(named("only"))
    assert bare.handle(Open("a2")) == "a2"
    assert trail == ["only Open", "only Opened"]


def test_an_async_handler_runs_on_the_blocking_bus() -> None:
    router = Router()

    @router.handler
    async def open_account(cmd: Open) -> str:
        await asyncio.sleep(0)
        return cmd.account.upper()

    assert MessageBus(router).handle(Open("a1")) == "A1"


def test_concurrent_calls_on_one_bus_keep_their_events_apart(store: MemoryStore) -> None:
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()
    listener = Router()

    @listener.handler
    def record(event: Opened, envelope: Envelope[Opened]) -> None:
        with lock:
            seen.setdefault(str(envelope.correlation_id), []).append(event.account)

    bus = MessageBus(
        [banking([]), listener],
        dependencies={"uow": PerCall(lambda: UnitOfWork(store)), "log": []},
        retry_waits=False,
    )

    def open_many(prefix: str) -> None:
        for i in range(50):
            bus.handle(Open(f"{prefix}-{i}"))

    threads = [threading.Thread(target=open_many, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 200
    assert all(len(accounts) == 1 for accounts in seen.values())
    assert len(store.read_all()) == 200


def test_a_per_call_dependency_is_made_for_every_call() -> None:
    made: list[object] = []
    router = Router()

    @router.handler
    def open_account(cmd: Open, token: object) -> object:
        return token

    def make() -> object:
        made.append(object())
        return made[-1]

    bus = MessageBus(router, dependencies={"token": PerCall(make)})
    assert [bus.handle(Open("a")), bus.handle(Open("b"))] == made
    assert made[0] is not made[1]


# The async bus runs the same source; these check the async paths themselves.


def run(coroutine: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coroutine

    return asyncio.run(main())


def async_banking(log: list[str]) -> Router:
    router = Router()

    @router.handler
    async def open_account(cmd: Open, uow: AsyncUnitOfWork) -> str:
        async with uow:
            await uow.repository(Account).add(Account.open(cmd.account))
            await uow.commit()
        log.append(f"opened {cmd.account}")
        return cmd.account

    @router.handler
    async def withdraw(cmd: Withdraw, uow: AsyncUnitOfWork) -> int:
        async with uow:
            account = await uow.repository(Account).get(cmd.account)
            assert account is not None
            account.withdraw(cmd.amount)
            await uow.commit()
        return account.balance

    @router.handler
    def on_opened(event: Opened, log: list[str]) -> None:
        log.append(f"sync handler saw {event.account}")

    @router.handler
    async def on_withdrawn(event: Withdrawn, log: list[str]) -> None:
        log.append(f"async handler saw {event.amount}")
        if event.amount == 13:
            raise ValueError("unlucky")

    return router


def test_async_bus_dispatches_commands_and_events_in_order() -> None:
    log: list[str] = []
    store = AsyncMemoryStore()
    bus = AsyncMessageBus(
        async_banking(log),
        dependencies={"uow": AsyncUnitOfWork(store), "log": log},
        retry_waits=False,
    )

    async def scenario() -> None:
        assert await bus.handle(Open("a1")) == "a1"
        assert await bus.handle(Withdraw("a1", 13)) == -13
        with pytest.raises(Overdrawn):
            await bus.handle(Withdraw("a1", 1000))

    run(scenario())
    assert log == [
        "opened a1",
        "sync handler saw a1",
        "async handler saw 13",
        "async handler saw 13",
        "async handler saw 13",
    ]
    assert isinstance(bus.dead_letters, DeadLetters)  # the memory store, when none is given
    (letter,) = bus.dead_letters.list()
    assert letter.error == "ValueError: unlucky"


def test_async_bus_middleware_and_concurrent_tasks() -> None:
    store = AsyncMemoryStore()
    log: list[str] = []
    trail: list[str] = []

    async def tracing(
        envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
    ) -> Any:
        trail.append(type(envelope.message).__name__)
        return await call_next(envelope)

    def bus() -> AsyncMessageBus:
        return AsyncMessageBus(
            async_banking(log),
            dependencies={"uow": AsyncUnitOfWork(store), "log": log},
            middleware=[tracing],
        )

    async def scenario() -> None:
        results = await asyncio.gather(*(bus().handle(Open(f"a{i}")) for i in range(20)))
        assert sorted(results) == sorted(f"a{i}" for i in range(20))

    run(scenario())
    assert trail.count("Open") == 20
    assert trail.count("Opened") == 20


def test_blocking_bus_refuses_async_handlers_inside_a_running_loop() -> None:
    router = Router()

    @router.handler
    async def open_account(cmd: Open) -> str:
        return cmd.account

    bus = MessageBus(router)

    async def inside_loop() -> None:
        with pytest.raises(RuntimeError, match="use the Async variant"):
            bus.handle(Open("a1"))

    run(inside_loop())


def test_the_logging_middleware_logs_ids_outcome_and_timing(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(store, [], middleware=[LogMessages()])
    with caplog.at_level(logging.INFO, logger="tidings.messages"):
        command = Envelope.new(Open("a1"))
        bus.handle(command)
        with pytest.raises(Overdrawn):
            bus.handle(Withdraw("a1", 1000))
    lines = [r.getMessage() for r in caplog.records if r.name == "tidings.messages"]
    assert lines[0].startswith(f"Open {command.message_id} handled in ")
    assert f"correlation {command.message_id}" in lines[0]
    assert lines[1].startswith("Opened ")
    assert f"causation {command.message_id}" in lines[1]
    assert "Withdraw" in lines[2] and "failed" in lines[2] and "Overdrawn" in lines[2]


def test_an_object_with_an_async_call_is_awaited() -> None:
    class Greeter:
        async def __call__(self, cmd: Greet) -> str:
            await asyncio.sleep(0)
            return "hello"

    router = Router()
    router.handler(message=Greet)(Greeter())
    assert MessageBus(router).handle(Greet()) == "hello"


def test_async_bus_traces_a_bare_command_to_what_it_commits_through_middleware() -> None:
    store = AsyncMemoryStore()
    seen: list[Envelope[Message]] = []
    router = Router()

    @router.handler
    async def open_account(cmd: Open, uow: AsyncUnitOfWork, envelope: Envelope[Open]) -> None:
        seen.append(envelope)
        async with uow:
            await uow.repository(Account).add(Account.open(cmd.account))
            await uow.commit()

    @router.handler
    async def on_opened(event: Opened, envelope: Envelope[Opened]) -> None:
        seen.append(envelope)

    async def record(
        envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
    ) -> Any:
        seen.append(envelope)
        return await call_next(envelope)

    bus = AsyncMessageBus(router, dependencies={"uow": AsyncUnitOfWork(store)}, middleware=[record])
    run(bus.handle(Open("a1")))
    outer, command, around_event, event = seen
    assert command is outer
    assert around_event is event
    assert event.causation_id == command.message_id
    assert event.correlation_id == command.message_id


@dataclass(frozen=True)
class Notify(Command):
    account: str


@dataclass(frozen=True)
class Notified(Event, type_name="bus.Notified"):
    account: str


class Notice(EventSourced):
    @classmethod
    def of(cls, account: str, command_id: UUID) -> "Notice":
        notice = cls(f"{account}-{command_id}")
        notice.record(Notified(account))
        return notice

    @applies
    def _notified(self, event: Notified) -> None:
        pass


def nested_commands(
    bus_of: list[MessageBus], seen: dict[str, Envelope[Message]], explicit: Envelope[Message]
) -> Router:
    """A command whose handler sends a bare command and event; an event whose handler does too.

    The handlers send through `bus_of[0]`; `explicit` is sent as given.
    """
    router = Router()

    @router.handler
    def open_account(cmd: Open, envelope: Envelope[Open]) -> None:
        seen[f"open {cmd.account}"] = envelope
        bus_of[0].handle(Notify(cmd.account))
        bus_of[0].handle(Audited(cmd.account))

    @router.handler
    def notify(cmd: Notify, envelope: Envelope[Notify], uow: UnitOfWork) -> None:
        seen[f"notify {cmd.account}"] = envelope
        if cmd.account != "explicit":
            with uow:
                uow.repository(Notice).add(Notice.of(cmd.account, envelope.message_id))
                uow.commit()

    @router.handler
    def on_audited(event: Audited, envelope: Envelope[Audited]) -> None:
        seen[f"audited {event.account}"] = envelope
        bus_of[0].handle(Notify(f"audit-{event.account}"))
        bus_of[0].handle(explicit)

    return router


def async_nested_commands(
    bus_of: list[AsyncMessageBus],
    seen: dict[str, Envelope[Message]],
    explicit: Envelope[Message],
) -> Router:
    """`nested_commands` for the async bus."""
    router = Router()

    @router.handler
    async def open_account(cmd: Open, envelope: Envelope[Open]) -> None:
        seen[f"open {cmd.account}"] = envelope
        await bus_of[0].handle(Notify(cmd.account))
        await bus_of[0].handle(Audited(cmd.account))

    @router.handler
    async def notify(cmd: Notify, envelope: Envelope[Notify], uow: AsyncUnitOfWork) -> None:
        seen[f"notify {cmd.account}"] = envelope
        if cmd.account != "explicit":
            async with uow:
                await uow.repository(Notice).add(Notice.of(cmd.account, envelope.message_id))
                await uow.commit()

    @router.handler
    async def on_audited(event: Audited, envelope: Envelope[Audited]) -> None:
        seen[f"audited {event.account}"] = envelope
        await bus_of[0].handle(Notify(f"audit-{event.account}"))
        await bus_of[0].handle(explicit)

    return router


def assert_one_conversation(
    seen: dict[str, Envelope[Message]], stored: list[Any], explicit: Envelope[Message]
) -> None:
    """Every nested message continues the first command's conversation, caused by its sender."""
    first = seen["open a1"]
    assert first.causation_id is None
    conversation = first.correlation_id
    assert seen["notify a1"].correlation_id == conversation
    assert seen["notify a1"].causation_id == first.message_id
    assert seen["audited a1"].correlation_id == conversation
    assert seen["audited a1"].causation_id == first.message_id
    assert seen["notify audit-a1"].correlation_id == conversation
    assert seen["notify audit-a1"].causation_id == seen["audited a1"].message_id
    # An envelope given explicitly is used as given, even inside a dispatch.
    assert seen["notify explicit"] == explicit
    by_account = {record.stream.split("-")[1]: record for record in stored}
    assert by_account["a1"].correlation_id == conversation
    assert by_account["a1"].causation_id == seen["notify a1"].message_id
    assert by_account["audit"].correlation_id == conversation
    assert by_account["audit"].causation_id == seen["notify audit-a1"].message_id


@pytest.mark.parametrize("middleware", [False, True], ids=["bare", "middleware"])
def test_a_bare_message_sent_inside_a_handler_continues_the_conversation(
    middleware: bool,
) -> None:
    store = MemoryStore()
    seen: dict[str, Envelope[Message]] = {}
    explicit: Envelope[Message] = Envelope.new(Notify("explicit"), correlation_id=uuid4())
    bus_of: list[MessageBus] = []
    layers = [LogMessages()] if middleware else []
    bus_of.append(
        MessageBus(
            nested_commands(bus_of, seen, explicit),
            dependencies={"uow": PerCall(lambda: UnitOfWork(store))},
            middleware=layers,
        )
    )
    bus_of[0].handle(Open("a1"))
    assert_one_conversation(seen, store.read_all(), explicit)


@pytest.mark.parametrize("middleware", [False, True], ids=["bare", "middleware"])
def test_a_bare_message_sent_inside_an_async_handler_continues_the_conversation(
    middleware: bool,
) -> None:
    async def scenario() -> None:
        store = AsyncMemoryStore()
        seen: dict[str, Envelope[Message]] = {}
        explicit: Envelope[Message] = Envelope.new(Notify("explicit"), correlation_id=uuid4())
        bus_of: list[AsyncMessageBus] = []
        layers = [_async_pass_through] if middleware else []
        bus_of.append(
            AsyncMessageBus(
                async_nested_commands(bus_of, seen, explicit),
                dependencies={"uow": PerCall(lambda: AsyncUnitOfWork(store))},
                middleware=layers,
            )
        )
        await bus_of[0].handle(Open("a1"))
        assert_one_conversation(seen, await store.read_all(), explicit)

    asyncio.run(scenario())


async def _async_pass_through(
    envelope: Envelope[Message], call_next: Callable[[Envelope[Message]], Awaitable[Any]]
) -> Any:
    return await call_next(envelope)
