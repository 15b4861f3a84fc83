"""Event stores: the protocol every backend implements, the memory and the SQLite backends."""

from tidings.store._async.base import (
    AsyncEventReader,
    AsyncEventStore,
    AsyncReadModelStore,
    AsyncReadModelTransaction,
    AsyncStoreTransaction,
    AsyncStoreWriter,
    AsyncTransactional,
)
from tidings.store._async.memory import AsyncMemoryStore
from tidings.store._async.sqlite import (
    AsyncSQLiteJoinedWriter,
    AsyncSQLiteStore,
    AsyncSQLiteTransaction,
)
from tidings.store._sync.base import (
    EventReader,
    EventStore,
    ReadModelStore,
    ReadModelTransaction,
    StoreTransaction,
    StoreWriter,
    Transactional,
)
from tidings.store._sync.memory import MemoryStore
from tidings.store._sync.sqlite import SQLiteJoinedWriter, SQLiteStore, SQLiteTransaction
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
    Watermark,
)

__all__ = [
    "AppendResult",
    "AsyncEventReader",
    "AsyncEventStore",
    "AsyncMemoryStore",
    "AsyncReadModelStore",
    "AsyncSQLiteJoinedWriter",
    "AsyncSQLiteStore",
    "AsyncSQLiteTransaction",
    "AsyncReadModelTransaction",
    "AsyncStoreTransaction",
    "AsyncStoreWriter",
    "AsyncTransactional",
    "EventReader",
    "EventStore",
    "ExpectedVersion",
    "MemoryStore",
    "NewEvent",
    "ReadModelStore",
    "RecordedEvent",
    "SQLiteJoinedWriter",
    "SQLiteStore",
    "SQLiteTransaction",
    "Snapshot",
    "ReadModelTransaction",
    "StoreTransaction",
    "StoreWriter",
    "StreamInfo",
    "StreamState",
    "Transactional",
    "Watermark",
]
