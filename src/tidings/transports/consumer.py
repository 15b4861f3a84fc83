"""The consumer: messages received from a broker handed to a bus, each once, through an inbox.

For each delivery, in the order received:

1. A message that does not decode (not a tidings event, or a class not
   loaded here) becomes a dead letter of handler `consumer:<name>`, holding
   its JSON as an `UndecodedEvent`, and is acked.
2. One whose id the inbox holds was handled before: it is acked, unhandled.
3. Otherwise the bus handles it, as `bus.handle(envelope)`: its handlers'
   failures are retried and dead-lettered by the bus itself, never raised.
   Handlers that commit through an `AsyncInboxUnitOfWork` record the id with
   their effects; when none did, the consumer records it after the bus
   returns. Then it acks.

A crash after a handler's commit and before the ack redelivers the message,
and step 2 acks it: effects committed through the inbox unit of work
happen exactly once. Effects made otherwise (outside the store's database,
or through a plain unit of work) happen again when a crash comes before the
consumer's own record: at least once. When the store cannot be reached the delivery is nacked and
received again later; nothing is dead-lettered for it.
"""

from __future__ import annotations

import inspect
import logging

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
        """Receive and hand over until `stop` is called."""
        self._stopped = False
        await self.inbox.prepare()
        while not self._stopped:
            await self.run_once()

    def stop(self) -> None:
        """Finish the delivery in hand, then return from `run`."""
        self._stopped = True

    async def run_once(self) -> int:
        """Fetch one batch and hand it over; how many deliveries it held."""
        deliveries = await self.receiver.fetch(self.batch_size, self.wait)
        for index, delivery in enumerate(deliveries):
            try:
                await self._deliver(delivery)
            except StoreUnavailable:
                logger.warning(
                    "consumer %s cannot reach its store; the rest of the batch comes again",
                    self.name,
                    exc_info=True,
                )
                for left in deliveries[index:]:
                    await left.nack()
                await anyio.sleep(self.retry_after)
                break
        return len(deliveries)

    async def _deliver(self, delivery: AsyncDelivery) -> None:
        try:
            envelope = decoded(delivery.message, self.codec)
        except (MalformedMessage, EventDecodeError) as exc:
            await self._dead_letter(undecoded(delivery.message, exc), exc)
            await delivery.ack()
            return
        if await self.inbox.seen(envelope.message_id):
            await delivery.ack()
            return
        if not await self._hand_over(envelope):
            await self.inbox.record(envelope.message_id)
        await delivery.ack()

    async def _hand_over(self, envelope: Envelope[Event]) -> bool:
        """Let the bus handle `envelope`; whether a handler's unit of work recorded it."""
        state = Receiving(self.inbox, envelope.message_id)
        token = receiving.set(state)
        try:
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
