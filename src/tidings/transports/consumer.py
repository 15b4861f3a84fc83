"""The consumer: messages received from a broker handed to a bus, each once, through an inbox.

Deliveries come in batches (`batch_size`: JetStream's pull fetch, up to
RabbitMQ's prefetch, Redis's `XREADGROUP COUNT`). For each batch:

1. A message that does not decode (not a tidings event, or a class not
   loaded here) becomes a dead letter of handler `consumer:<name>`, holding
   its JSON as an `UndecodedEvent`.
2. The inbox is asked, in one query, which of the batch's ids it holds:
   those were handled before, and are not handled again; nor is a message
   the batch holds twice, after its first.
3. Each other one, in the order received, is handled by the bus, as
   `bus.handle(envelope)`: its handlers' failures are retried and
   dead-lettered by the bus itself, never raised. Handlers that commit
   through an `AsyncInboxUnitOfWork` record the id with their effects.
4. The ids no handler recorded are recorded together, in one transaction;
   then every delivery of the batch is acked, the acks awaited at once (a
   binding may send them together: Redis Streams as one `XACK`).

A crash after a handler's commit and before the ack redelivers the message,
and step 2 skips it: effects committed through the inbox unit of work
happen exactly once. Effects made otherwise (outside the store's database,
or through a plain unit of work) happen again when a crash comes before the
batch's record: at least once. When the store cannot be reached the
batch is nacked and received again later; nothing is dead-lettered for it.
"""

from __future__ import annotations

import inspect
import logging
from uuid import UUID

import anyio

from tidings._async.bus import AsyncMessageBus
from tidings.codec import Codec
from tidings.dead_letters import DeadLetter
from tidings.errors import EventDecodeError, StoreUnavailable
from tidings.messages import Envelope, Event, Message
from tidings.observability import hooks
from tidings.observability.logs import envelope_fields
from tidings.transports.binding import AsyncDelivery, AsyncReceiver
from tidings.transports.envelopes import MalformedMessage, decoded, undecoded
from tidings.transports.inbox import AsyncInbox, Receiving, receiving

__all__ = ["AsyncBrokerConsumer", "letter_handler"]

logger = logging.getLogger("tidings.transports")


async def _ack_all(deliveries: list[AsyncDelivery]) -> None:
    """Ack each delivery, the acks awaited at once so a binding may send them together.

    The first failure is raised as it is, not in a group, as one ack's
    would be: the service that runs the consumer logs it by its own name.
    """
    try:
        async with anyio.create_task_group() as tasks:
            for delivery in deliveries:
                tasks.start_soon(delivery.ack)
    except ExceptionGroup as group:
        raise group.exceptions[0] from None


def letter_handler(consumer: str) -> str:
    """The handler named in the dead letters of what consumer `consumer` could not hand over."""
    return f"consumer:{consumer}"


class AsyncBrokerConsumer:
    """Hands what `receiver` delivers to `bus`, deduplicated by `inbox` (see the module).

    ::

        inbox = AsyncInbox(store, "billing")
        consumer = AsyncBrokerConsumer(await binding.receiver("billing"), bus, inbox)
        await consumer.run()  # until consumer.stop()

    Deliveries are fetched `batch_size` at a time, waiting up to `wait`
    seconds for one; after the store failed, the consumer waits
    `retry_after` seconds before fetching again.
    """

    def __init__(
        self,
        receiver: AsyncReceiver,
        bus: AsyncMessageBus,
        inbox: AsyncInbox,
        *,
        codec: Codec | None = None,
        batch_size: int = 100,
        wait: float = 1.0,
        retry_after: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.receiver = receiver
        self.bus = bus
        self.inbox = inbox
        self.codec = codec if codec is not None else Codec()
        self.batch_size = batch_size
        self.wait = wait
        self.retry_after = retry_after
        self._stopped = False

    @property
    def name(self) -> str:
        return self.inbox.consumer

    async def run(self) -> None:
        """Receive and hand over until `stop`; returns at once after `stop`, which is final.

        So a stop that comes before `run` begins (a SIGTERM while the
        service is connecting) is not lost.
        """
        await self.inbox.prepare()
        while not self._stopped:
            await self.run_once()

    def stop(self) -> None:
        """Finish the batch in hand (handled, recorded, acked), then return from `run`."""
        self._stopped = True

    async def run_once(self) -> int:
        """Fetch one batch and hand it over; how many deliveries it held."""
        deliveries = await self.receiver.fetch(self.batch_size, self.wait)
        if not deliveries:
            return 0
        try:
            await self._deliver(deliveries)
        except StoreUnavailable:
            logger.warning(
                "consumer %s cannot reach its store; the batch comes again",
                self.name,
                exc_info=True,
            )
            for delivery in deliveries:
                await delivery.nack()
            await anyio.sleep(self.retry_after)
            return len(deliveries)
        await _ack_all(deliveries)
        return len(deliveries)

    async def _deliver(self, deliveries: list[AsyncDelivery]) -> None:
        """Steps 1 to 4 of the module's, for one batch: everything but the acks."""
        envelopes: list[Envelope[Event]] = []
        for delivery in deliveries:
            try:
                envelopes.append(decoded(delivery.message, self.codec))
            except (MalformedMessage, EventDecodeError) as exc:
                await self._dead_letter(undecoded(delivery.message, exc), exc)
        handled = await self.inbox.seen_among({e.message_id for e in envelopes})
        unrecorded: list[UUID] = []
        for envelope in envelopes:
            if envelope.message_id in handled:
                continue
            handled.add(envelope.message_id)
            if not await self._hand_over(envelope):
                unrecorded.append(envelope.message_id)
        await self.inbox.record_all(unrecorded)

    async def _hand_over(self, envelope: Envelope[Event]) -> bool:
        """Let the bus handle `envelope`; whether a handler's unit of work recorded it."""
        state = Receiving(self.inbox, envelope.message_id)
        token = receiving.set(state)
        try:
            with hooks.receiving(self.receiver, self.name, envelope):
                await self.bus.handle(envelope)
        except StoreUnavailable:
            raise
        except Exception as exc:  # the bus dead-letters handlers' failures; this is beyond them
            await self._dead_letter(envelope, exc)
        finally:
            receiving.reset(token)
        return state.recorded

    async def _dead_letter(self, envelope: Envelope[Message], error: Exception) -> None:
        logger.error(
            "consumer %s cannot handle message %s: %s",
            self.name,
            envelope.message_id,
            error,
            extra=envelope_fields(envelope, letter_handler(self.name)),
        )
        hooks.dead_lettered(letter_handler(self.name), error)
        letter = DeadLetter.of(envelope, letter_handler(self.name), error, 1)
        added = self.bus.dead_letters.add(letter)
        if inspect.isawaitable(added):
            await added
