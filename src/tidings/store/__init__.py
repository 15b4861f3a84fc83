"""Event stores: the protocol every backend implements, the memory and the SQLite backends."""

from tidings.store._async.base import AsyncEventStore, AsyncStoreTransaction
from tidings.store._async.memory import AsyncMemoryStore
from tidings.store._async.sqlite import AsyncSQLiteStore, AsyncSQLiteTransaction
from tidings.store._sync.base import EventStore, StoreTransaction
from tidings.store._sync.memory import MemoryStore
from tidings.store._sync.sqlite import SQLiteStore, SQLiteTransaction
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamInfo,
    StreamState,
)

__all__ = [
    "AppendResult",
    "AsyncEventStore",
    "AsyncMemoryStore",
    "AsyncSQLiteStore",
    "AsyncSQLiteTransaction",
    "AsyncStoreTransaction",
    "EventStore",
    "ExpectedVersion",
    "MemoryStore",
    "NewEvent",
    "RecordedEvent",
    "SQLiteStore",
    "SQLiteTransaction",
    "StoreTransaction",
    "StreamInfo",
    "StreamState",
]
