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

Each batch the runner reads is published with up to `max_in_flight`
publications awaiting their confirmation at once, at most one per stream:
an event is sent only once the one before it in its stream is confirmed,
so each stream's events reach the broker in their order, while events of
different streams may overtake one another. The checkpoint then moves to
the last event of the longest confirmed run from the batch's start: past
a failed publication never, and what came after it in the batch is
published again with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from tidings.codec import Codec
from tidings.messages import Envelope, Event
from tidings.observability import hooks
from tidings.projections import OnFailure, Projection, handles
from tidings.retry import Retry
from tidings.store import AsyncReadModelTransaction
from tidings.transports.binding import AsyncPublisher
from tidings.transports.envelopes import encoded

__all__ = ["OutboxRelay"]


class OutboxRelay(Projection[AsyncReadModelTransaction]):
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
        max_in_flight: int = 256,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.name = name
        self.categories = frozenset(categories) if categories is not None else None  # type: ignore[misc]
        self.binding = binding
        self.max_in_flight = max_in_flight
        self._codec = Codec()

    def reset(self, tx: object) -> None:
        """Nothing to empty: a rebuild publishes the whole log again, to be deduplicated."""

    @handles
    async def publish(self, event: Event, envelope: Envelope[Event], tx: None) -> None:
        with hooks.relaying(self.binding, encoded(envelope, self._codec)) as message:
            await self.binding.publish(message)

    async def handle_batch(self, envelopes: list[Envelope[Event]]) -> tuple[int, Exception | None]:
        """Publish `envelopes`; how many from the first are confirmed, and the next one's error.

        With `max_in_flight` 1, one after the other in log order. Otherwise
        concurrently, each stream's events one at a time in order; after a
        failure nothing later in the batch is started (what is in flight
        finishes, and is published again after the retry: at least once).
        """
        if self.max_in_flight == 1:
            for index, envelope in enumerate(envelopes):
                try:
                    await self.publish(envelope.message, envelope, None)
                except Exception as exc:
                    return index, exc
            return len(envelopes), None
        count = len(envelopes)
        confirmed = [False] * count
        errors: list[Exception | None] = [None] * count
        slots = asyncio.Semaphore(self.max_in_flight)
        first_failure = count

        async def stream(indexes: list[int]) -> None:
            """One stream's events of the batch, each sent once the one before is confirmed."""
            nonlocal first_failure
            for index in indexes:
                async with slots:
                    if index > first_failure:
                        return
                    envelope = envelopes[index]
                    try:
                        await self.publish(envelope.message, envelope, None)
                    except Exception as exc:
                        errors[index] = exc
                        first_failure = min(first_failure, index)
                        return
                    confirmed[index] = True

        streams: dict[str | None, list[int]] = {}
        for index, envelope in enumerate(envelopes):
            streams.setdefault(envelope.stream, []).append(index)
        async with asyncio.TaskGroup() as tasks:
            for indexes in streams.values():
                tasks.create_task(stream(indexes))
        handled = confirmed.index(False) if False in confirmed else count
        if handled == count:
            return count, None
        # The first unconfirmed one failed itself: any other was held back by an earlier failure.
        error = errors[handled]
        assert error is not None
        return handled, error
