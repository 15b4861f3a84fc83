"""The PostgreSQL event store, async and blocking; needs the `postgres` extra.

Install it with `pip install "tidings[postgres]"` (psycopg 3 and psycopg-pool).
"""

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f'tidings.store.postgres needs the postgres extra: pip install "tidings[postgres]" ({exc})',
        name=exc.name,
    ) from exc

from tidings.store._async.postgres import (
    AsyncPostgresJoinedWriter,
    AsyncPostgresStore,
    AsyncPostgresTransaction,
)
from tidings.store._sync.postgres import (
    PostgresJoinedWriter,
    PostgresStore,
    PostgresTransaction,
)
from tidings.store.postgres_sql import EVENTS_PER_TRANSACTION, SCHEMA_VERSION

__all__ = [
    "EVENTS_PER_TRANSACTION",
    "SCHEMA_VERSION",
    "AsyncPostgresJoinedWriter",
    "AsyncPostgresStore",
    "AsyncPostgresTransaction",
    "PostgresJoinedWriter",
    "PostgresStore",
    "PostgresTransaction",
]
