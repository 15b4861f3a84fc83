"""Given a store's past, when a message on the bus, then these committed events or this error."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

from tidings._async.bus import AsyncMessageBus
from tidings._async.uow import AsyncUnitOfWork
from tidings.codec import Codec
from tidings.dead_letters import DeadLetter
from tidings.handlers import Router
from tidings.messages import Envelope, Event, Message
from tidings.store._async.memory import AsyncMemoryStore
from tidings.testing.matching import Expected, check_events, check_message, count, listing
from tidings.testing.outcome import BusOutcome

__all__ = ["AsyncBusScenario"]

X = TypeVar("X", bound=Exception)


class AsyncBusScenario:
    """Given a store's past, when a message, then exactly these committed events or this error.

    Built from the application's routers and the fakes its handlers need::

        scenario = AsyncBusScenario(router, dependencies={"send_mail": Recorder()})
        await scenario.given("Order-o1", OrderPlaced("o1"))
        outcome = await scenario.when(ConfirmOrder("o1")).then(OrderConfirmed("o1"))

    A unit of work over the scenario's `AsyncMemoryStore` is injected as `uow`
    (made by `unit_of_work`, `AsyncUnitOfWork` unless given) unless
    `dependencies` names one. An application with a composition root is built
    by it instead::

        scenario = AsyncBusScenario.using(lambda store: bootstrap(store=store, send_mail=mail))

    Either way the waits between retries are switched off. Every event
    committed while the message is handled is also handled by the bus, in
    process, before `handle` returns; `then` checks those events, and that no
    event handler was dead-lettered unless `dead_letters` says how many.
    """

    def __init__(
        self,
        handlers: Router | Iterable[Router],
        *,
        dependencies: Mapping[str | type, Any] | None = None,
        unit_of_work: Callable[[AsyncMemoryStore], AsyncUnitOfWork] = AsyncUnitOfWork,
        store: AsyncMemoryStore | None = None,
        **bus_options: Any,
    ) -> None:
        self.store = store if store is not None else AsyncMemoryStore()
        provided = dict(dependencies or {})
        self.uow: AsyncUnitOfWork | None = None
        if "uow" not in provided:
            self.uow = unit_of_work(self.store)
            provided["uow"] = self.uow
        bus_options.setdefault("retry_waits", False)
        self._start(self.store, AsyncMessageBus(handlers, dependencies=provided, **bus_options))

    @classmethod
    def using(
        cls,
        build: Callable[[AsyncMemoryStore], AsyncMessageBus],
        *,
        store: AsyncMemoryStore | None = None,
    ) -> Self:
        """A scenario over the bus that `build` makes around the scenario's store."""
        store = store if store is not None else AsyncMemoryStore()
        bus = build(store)
        if not isinstance(bus, AsyncMessageBus):
            wanted = "an AsyncMessageBus"  # sync: wanted = "a MessageBus"
            raise TypeError(f"the build function must return {wanted}, not {bus!r}")
        bus.retry_waits = False
        scenario = cls.__new__(cls)
        scenario.uow = None
        scenario._start(store, bus)
        return scenario

    def _start(self, store: AsyncMemoryStore, bus: AsyncMessageBus) -> None:
        self.store = store
        self.bus = bus
        self.codec = Codec()
        self._when: Message | Envelope[Message] | None = None
        self._outcome: tuple[BusOutcome, Exception | None] | None = None

    async def given(self, stream: str, *events: Event) -> Self:
        """Append `events` to `stream` in the store, as if committed earlier."""
        if not isinstance(stream, str):
            raise TypeError(f"given() takes the stream name first, then its events, not {stream!r}")
        if not events:
            raise TypeError(f"given({stream!r}) needs at least one event")
        strays = [e for e in events if not isinstance(e, Event)]
        if strays:
            raise TypeError(f"given() appends events, not {strays[0]!r}")
        envelopes: list[Envelope[Event]] = []
        for event in events:
            conversation = envelopes[0].correlation_id if envelopes else None
            envelopes.append(Envelope.new(event, correlation_id=conversation))
        await self.store.append(stream, [self.codec.new_event(e) for e in envelopes])
        return self

    async def given_handled(self, *messages: Message) -> Self:
        """Handle `messages` through the bus first (for example commands that set up state)."""
        for message in messages:
            await self.bus.handle(message)
        return self

    def when(self, message: Message | Envelope[Message]) -> Self:
        """The message under test; it is handled at `then` or `then_raises`."""
        self._when = message
        self._outcome = None
        return self

    async def then(self, *expected: Expected, dead_letters: int = 0) -> BusOutcome:
        """Assert handling committed exactly `expected`, in log order, and dead-lettered so many."""
        outcome, error = await self._run()
        if error is not None:
            raise AssertionError(
                f"{self._subject()}: expected {count(len(expected))}, but the caller got "
                f"{type(error).__name__}: {error}"
            ) from error
        check_events(self._subject(), expected, outcome.events)
        if len(outcome.dead_letters) != dead_letters:
            letters = "\n".join(
                f"  {letter.handler} on {type(letter.envelope.message).__name__}: "
                f"{letter.error} ({letter.attempts} attempts)"
                for letter in outcome.dead_letters
            )
            raise AssertionError(
                f"{self._subject()}: expected {dead_letters} dead letters, "
                f"got {len(outcome.dead_letters)}:\n{letters or '  (none)'}"
            )
        return outcome

    async def then_raises(self, error: type[X], match: str | None = None) -> X:
        """Assert the caller got `error` (or a subclass), its message matching regex `match`."""
        outcome, raised = await self._run()
        if raised is None:
            raise AssertionError(
                f"{self._subject()}: expected {error.__name__}, but it returned "
                f"{outcome.result!r} and committed:\n{listing(outcome.events)}"
            )
        if not isinstance(raised, error):
            raise AssertionError(
                f"{self._subject()}: expected {error.__name__}, "
                f"but the caller got {type(raised).__name__}: {raised}"
            ) from raised
        check_message(raised, match)
        return raised

    async def _run(self) -> tuple[BusOutcome, Exception | None]:
        if self._when is None:
            raise RuntimeError("call when(message) before then(...) or then_raises(...)")
        if self._outcome is None:
            known = {letter.id for letter in await self._dead_letters()}
            before = await self._last_position()
            result: Any = None
            error: Exception | None = None
            try:
                result = await self.bus.handle(self._when)
            except Exception as exc:
                error = exc
            committed = tuple(
                self.codec.envelope(record) for record in await self.store.read_all(after=before)
            )
            letters = tuple(d for d in await self._dead_letters() if d.id not in known)
            self._outcome = (BusOutcome(result, committed, letters), error)
        return self._outcome

    async def _dead_letters(self) -> list[DeadLetter]:
        """The bus's dead letters, kept in memory or in a dead-letter store."""
        letters = self.bus.dead_letters.list()
        if not isinstance(letters, list):  # sync:
            letters = await letters  # sync:
        return letters

    async def _last_position(self) -> int:
        records = await self.store.read_all()
        return records[-1].position if records else 0

    def _subject(self) -> str:
        message = self._when.message if isinstance(self._when, Envelope) else self._when
        return f"handling {message!r}"
