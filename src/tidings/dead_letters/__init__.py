"""Dead letters: events a handler kept failing on, kept to inspect, retry or drop.

`DeadLetters` keeps them in memory (the bus's default); `SQLDeadLetters` and
`AsyncSQLDeadLetters` in the event store's SQLite file or PostgreSQL schema,
where they survive restarts and every process sees them. Projection runners
keep theirs in the same store, under the handler `projection:<name>`.
"""

from tidings.dead_letters._async.base import AsyncDeadLetterStore
from tidings.dead_letters._async.sql import AsyncSQLDeadLetters
from tidings.dead_letters._sync.base import DeadLetterStore
from tidings.dead_letters._sync.sql import SQLDeadLetters
from tidings.dead_letters.letter import DeadLetter, UndecodedEvent
from tidings.dead_letters.memory import DeadLetters

__all__ = [
    "AsyncDeadLetterStore",
    "AsyncSQLDeadLetters",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLetters",
    "SQLDeadLetters",
    "UndecodedEvent",
]
