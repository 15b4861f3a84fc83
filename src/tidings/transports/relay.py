"""The outbox relay: the log's events published to a broker, in log order, from a checkpoint.

The event log is the outbox: an event is published only once it has
committed, and every committed event is published. The relay is a
projection, run by an `AsyncProjectionRunner` like any other, so its
position is a checkpoint in the store's database, one runner at a time
holds it, and `status()` shows its lag::

    relay = OutboxRelay(binding, name="outbox-nats", categories=["Order"])
    async with AsyncProjectionRunner(store, [relay]).running():
        ...

Not transactional: each event is published, and the broker's confirmation
awaited, before the checkpoint moves past it. A crash between the two
publishes that event again on restart (at least once; consumers dedupe by
the message id, see `AsyncInbox`), but never loses one.
"""

from __future__ import annotations

from collections.abc import Collection

from tidings.codec import Codec
from tidings.messages import Envelope, Event
from tidings.projections import OnFailure, Projection, handles
from tidings.retry import Retry
from tidings.transports.binding import AsyncPublisher
from tidings.transports.envelopes import encoded

__all__ = ["OutboxRelay"]


class OutboxRelay(Projection):
    """Publishes `$all` (of `categories`, if given) to `binding`, each event once confirmed.

    A publication that keeps failing (the broker is down) is retried by
    `retry`, then the relay parks on the event, keeping its error, rather
    than skip it: `runner.resume(name)` tries again from there. The runner
    decodes events before they reach the relay, so the relay's process must
    have their classes loaded; what it publishes is their current schema
    version, upcast if the log holds an older one.
    """

    transactional = False
    on_failure = OnFailure.PARK
    retry = Retry(attempts=8, first_delay=0.1, max_delay=5.0)

    def __init__(
        self,
        binding: AsyncPublisher,
        *,
        name: str = "outbox",
        categories: Collection[str] | None = None,
    ) -> None:
        self.name = name
        self.categories = frozenset(categories) if categories is not None else None  # type: ignore[misc]
        self.binding = binding
        self._codec = Codec()

    def reset(self, tx: object) -> None:
        """Nothing to empty: a rebuild publishes the whole log again, to be deduplicated."""

    @handles
    async def publish(self, event: Event, envelope: Envelope[Event], tx: object) -> None:
        await self.binding.publish(encoded(envelope, self._codec))
