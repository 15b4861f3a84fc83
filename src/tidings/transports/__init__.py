"""Broker transports: the log's events published to a broker, and received into a bus.

The bindings (`tidings.transports.nats`, `tidings.transports.rabbitmq`,
`tidings.transports.redis`, `tidings.transports.redis_pubsub`) each need
their extra; what is here needs none.
"""

from tidings.transports.binding import (
    AsyncBinding,
    AsyncDelivery,
    AsyncPublisher,
    AsyncReceiver,
    BrokerMessage,
)
from tidings.transports.consumer import AsyncBrokerConsumer
from tidings.transports.envelopes import MalformedMessage
from tidings.transports.inbox import AlreadyHandled, AsyncInbox, AsyncInboxUnitOfWork
from tidings.transports.relay import OutboxRelay
from tidings.transports.supervision import (
    AsyncConsumer,
    AsyncConsumerService,
    AsyncRelayService,
    Backoff,
)

__all__ = [
    "AlreadyHandled",
    "AsyncBinding",
    "AsyncBrokerConsumer",
    "AsyncConsumer",
    "AsyncConsumerService",
    "AsyncDelivery",
    "AsyncInbox",
    "AsyncInboxUnitOfWork",
    "AsyncPublisher",
    "AsyncReceiver",
    "AsyncRelayService",
    "Backoff",
    "BrokerMessage",
    "MalformedMessage",
    "OutboxRelay",
]
