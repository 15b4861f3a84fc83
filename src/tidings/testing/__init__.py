"""Given/when/then scenarios and small fakes for testing applications built on tidings.

Two scenarios, read the same way:

- `AggregateScenario` tests one aggregate with no bus and no store: given its
  past (events for an `EventSourced` aggregate, or a state-stored instance),
  when an action, then exactly these new events, or this error::

      (
          AggregateScenario(Order, "o1")
          .given(OrderPlaced("o1", "c1", items, total, "EUR"))
          .when(Order.confirm, at=NOON)
          .then(OrderConfirmed("o1", confirmed_at=NOON))
      )
      AggregateScenario(Order, "o1").given(...).when(Order.ship, "TN1").then_raises(
          InvalidTransition, match="it is pending"
      )

- `BusScenario` tests the application through a `MessageBus` over a
  `MemoryStore`: given events already in the store (or messages handled
  before), when a command, then exactly the events committed while handling
  it, or the error its caller gets; the result and the dead letters are on
  the outcome. `AsyncBusScenario` does the same through an `AsyncMessageBus`
  over an `AsyncMemoryStore`, inside an async test, where `given`,
  `given_handled`, `then` and `then_raises` are awaited::

      scenario = AsyncBusScenario(router, dependencies={"send_mail": Recorder()})
      await scenario.given("Order-o1", OrderPlaced("o1", "c1", items, total, "EUR"))
      await scenario.when(ConfirmOrder("o1")).then(like(OrderConfirmed))

Expected events are compared in order and in full. An expected event is
either an event, compared with `==` (a field set to `unittest.mock.ANY`
matches anything, which suits timestamps), or `like(EventType, field=value,
where=predicate)`, which matches an instance of the type whose named fields
are equal and for which the predicate holds, ignoring the other fields.
A mismatch raises `AssertionError` listing the expected and the actual events
and, position by position, what differs.

`Recorder` is a fake for a callable dependency (a mailer, a notifier, a
publisher): it records every call and can be told to fail.

The pytest plugin in `tidings.testing.pytest_plugin`, which pytest loads by
itself, offers these as fixtures (`tidings_scenario`), with event stores on
every backend (`tidings_store`, `tidings_async_store`).
"""

from tidings.testing._async.bus import AsyncBusScenario
from tidings.testing._sync.bus import BusScenario
from tidings.testing.aggregates import AggregateOutcome, AggregateScenario
from tidings.testing.fakes import Call, Recorder
from tidings.testing.matching import EventMatcher, Expected, like
from tidings.testing.outcome import BusOutcome

__all__ = [
    "AggregateOutcome",
    "AggregateScenario",
    "AsyncBusScenario",
    "BusOutcome",
    "BusScenario",
    "Call",
    "EventMatcher",
    "Expected",
    "Recorder",
    "like",
]
