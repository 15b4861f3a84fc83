"""Event stores: the protocol every backend implements, and the in-memory backend."""

from tidings.store._async.base import AsyncEventStore, AsyncStoreTransaction
from tidings.store._async.memory import AsyncMemoryStore
from tidings.store._sync.base import EventStore, StoreTransaction
from tidings.store._sync.memory import MemoryStore
from tidings.store.records import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamState

__all__ = [
    "AppendResult",
    "AsyncEventStore",
    "AsyncMemoryStore",
    "AsyncStoreTransaction",
    "EventStore",
    "ExpectedVersion",
    "MemoryStore",
    "NewEvent",
    "RecordedEvent",
    "StoreTransaction",
    "StreamState",
]
