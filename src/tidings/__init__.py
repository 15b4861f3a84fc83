"""tidings: commands, events, event sourcing, CQRS and projections on one durable event log."""

from tidings._async.bus import AsyncMessageBus, AsyncMiddleware
from tidings._async.middleware import AsyncLogMessages
from tidings._async.uow import AsyncEventSourcedRepository, AsyncRepository, AsyncUnitOfWork
from tidings._sync.bus import MessageBus, Middleware
from tidings._sync.middleware import LogMessages
from tidings._sync.uow import EventSourcedRepository, Repository, UnitOfWork
from tidings.codec import Codec
from tidings.dead_letters import DeadLetter, DeadLetters
from tidings.domain import Aggregate, EventSourced, applies
from tidings.errors import (
    AggregateNotFound,
    CascadeLimitExceeded,
    ConcurrencyError,
    ConfigurationError,
    DomainError,
    EventDecodeError,
    EventIdConflict,
    NoHandler,
    StoreUnavailable,
    StreamNotFound,
    TidingsError,
    UnknownEventType,
    WrongExpectedVersion,
)
from tidings.handlers import PerCall, Router
from tidings.messages import Command, Envelope, Event, Message, Query, new_id
from tidings.retry import Retry
from tidings.store import (
    AppendResult,
    AsyncEventStore,
    AsyncMemoryStore,
    AsyncSQLiteStore,
    EventStore,
    MemoryStore,
    NewEvent,
    RecordedEvent,
    SQLiteStore,
    StreamInfo,
    StreamState,
)
from tidings.store.urls import default_store_url, open_async_store, open_store

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "AppendResult",
    "AsyncEventSourcedRepository",
    "AsyncEventStore",
    "AsyncLogMessages",
    "AsyncMemoryStore",
    "AsyncMessageBus",
    "AsyncSQLiteStore",
    "AsyncMiddleware",
    "AsyncRepository",
    "AsyncUnitOfWork",
    "CascadeLimitExceeded",
    "Codec",
    "Command",
    "ConcurrencyError",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetters",
    "DomainError",
    "Envelope",
    "Event",
    "EventDecodeError",
    "EventIdConflict",
    "EventSourced",
    "EventSourcedRepository",
    "EventStore",
    "LogMessages",
    "MemoryStore",
    "Message",
    "MessageBus",
    "Middleware",
    "NewEvent",
    "NoHandler",
    "PerCall",
    "Query",
    "RecordedEvent",
    "Repository",
    "Retry",
    "Router",
    "SQLiteStore",
    "StoreUnavailable",
    "StreamNotFound",
    "StreamInfo",
    "StreamState",
    "TidingsError",
    "UnitOfWork",
    "UnknownEventType",
    "WrongExpectedVersion",
    "applies",
    "default_store_url",
    "new_id",
    "open_async_store",
    "open_store",
]
