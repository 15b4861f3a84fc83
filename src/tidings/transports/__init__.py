"""Broker transports: the log's events published to NATS or RabbitMQ, and received into a bus.

The bindings (`tidings.transports.nats`, `tidings.transports.rabbitmq`)
each need their extra; what is here needs none.
"""

from tidings.transports.binding import AsyncBinding, AsyncDelivery, AsyncReceiver, BrokerMessage
from tidings.transports.consumer import AsyncBrokerConsumer
from tidings.transports.envelopes import MalformedMessage
from tidings.transports.inbox import AlreadyHandled, AsyncInbox, AsyncInboxUnitOfWork
from tidings.transports.relay import OutboxRelay

__all__ = [
    "AlreadyHandled",
    "AsyncBinding",
    "AsyncBrokerConsumer",
    "AsyncDelivery",
    "AsyncInbox",
    "AsyncInboxUnitOfWork",
    "AsyncReceiver",
    "BrokerMessage",
    "MalformedMessage",
    "OutboxRelay",
]
