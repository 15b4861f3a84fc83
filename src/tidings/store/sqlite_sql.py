"""The SQL of the SQLite event store: its schema, migrations and statements.

Both the async and the blocking SQLite store run these functions on a
`sqlite3.Connection`; they hold no state. Tables: `tidings_events` holds
every event, its `position` in `$all` being the row id; `tidings_streams`
holds each stream's category and soft delete; `tidings_schema` records the
schema versions applied, so a later release can migrate a file written by
this one.

A stream's version is not kept on its row: it is its last event's, found at
once in the `(stream, version)` index. So an append writes its stream's row
only when it creates, or revives, the stream, and a commit writes one page
fewer (schema 4; measured in docs/benchmarks.md, "Cheaper rows").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NoReturn
from uuid import UUID, SafeUUID

from tidings.errors import ConfigurationError, StoreUnavailable, StreamNotFound
from tidings.store.checks import check_expected_version, repeated_append
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    category_of,
)

__all__ = [
    "SCHEMA_VERSION",
    "append",
    "database_file",
    "delete_stream",
    "head_position",
    "is_busy",
    "join",
    "list_streams",
    "migrate",
    "raise_unavailable",
    "read_all",
    "read_correlated",
    "read_snapshot",
    "read_stream",
    "save_snapshot",
    "stream_version",
    "use_wal",
]

SCHEMA_VERSION = 4
"""The schema this release writes; files at an older version are migrated on first use."""

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE tidings_events (
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            category TEXT NOT NULL,
            version INTEGER NOT NULL,
            event_id BLOB NOT NULL UNIQUE,
            type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            data BLOB NOT NULL,
            correlation_id BLOB NOT NULL,
            causation_id BLOB,
            occurred_at TEXT NOT NULL,
            headers BLOB NOT NULL,
            UNIQUE (stream, version)
        )
        """,
        "CREATE INDEX tidings_events_category ON tidings_events (category, position)",
        """
        CREATE TABLE tidings_streams (
            name TEXT PRIMARY KEY,
            category TEXT NOT NULL,
            version INTEGER NOT NULL,
            first_version INTEGER NOT NULL DEFAULT 1,
            deleted INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID
        """,
        "CREATE INDEX tidings_streams_category ON tidings_streams (category, name)",
    ),
    2: (
        """
        CREATE TABLE tidings_snapshots (
            stream TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            shape TEXT NOT NULL,
            data BLOB NOT NULL
        ) WITHOUT ROWID
        """,
    ),
    3: ("CREATE INDEX tidings_events_correlation ON tidings_events (correlation_id, position)",),
    4: ("ALTER TABLE tidings_streams DROP COLUMN version",),
}

# IN lists stay well under SQLite's limit on bound parameters (999 before 3.32).
_CHUNK = 500
_MAX_VERSION = 2**63 - 1

_COLUMNS = (
    "position, stream, version, event_id, type, schema_version, data,"
    " correlation_id, causation_id, occurred_at, headers"
)
_INSERT = (
    "INSERT INTO tidings_events (position, stream, category, version, event_id, type,"
    " schema_version, data, correlation_id, causation_id, occurred_at, headers)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NEW_STREAM = "INSERT INTO tidings_streams (name, category) VALUES (?, ?)"
_REVIVE_STREAM = "UPDATE tidings_streams SET deleted = 0 WHERE name = ?"
# A stream's version is its last event's: the (stream, version) index finds it at once.
_LAST_VERSION = "(SELECT max(version) FROM tidings_events WHERE stream = tidings_streams.name)"
_STREAM_STATE = f"SELECT {_LAST_VERSION}, deleted FROM tidings_streams WHERE name = ?"
# A deleted stream's first version lies beyond its last, so none of its events are visible.
_VISIBLE_FROM = "(SELECT first_version FROM tidings_streams WHERE name = ?)"
_READ_FORWARDS = (
    f"SELECT {_COLUMNS} FROM tidings_events WHERE stream = ? AND version >= ?"
    f" AND version >= {_VISIBLE_FROM} ORDER BY version LIMIT ?"
)
_READ_BACKWARDS = (
    f"SELECT {_COLUMNS} FROM tidings_events WHERE stream = ? AND version <= ?"
    f" AND version >= {_VISIBLE_FROM} ORDER BY version DESC LIMIT ?"
)


def raise_unavailable(path: str, exc: sqlite3.Error) -> NoReturn:
    """Raise a locked, missing, unreadable or failing database as `StoreUnavailable`.

    A statement SQLite cannot run (`SQLITE_ERROR`: no such table, a syntax
    error) is a mistake in the statement, not an unavailable store: it is
    raised as it is, as PostgreSQL's driver raises one.
    """
    if is_statement_error(exc):
        raise exc
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        raise StoreUnavailable(f"SQLite database {path!r}: {exc}") from exc
    raise exc


def is_statement_error(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused the statement itself (`SQLITE_ERROR`), not the database."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_ERROR


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock someone else holds (`SQLITE_BUSY`, `SQLITE_LOCKED`)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


def use_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (kept in the file: once switched, this only reads it).

    A switch SQLite could not make for a lock held elsewhere answers with the
    old mode rather than an error: that is raised as `SQLITE_BUSY` too.
    """
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        busy = sqlite3.OperationalError(f"database is locked (journal mode stays {mode})")
        busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
        raise busy


def migrate(connection: sqlite3.Connection) -> tuple[int, int]:
    """Create the schema, or bring an older one up to `SCHEMA_VERSION`, in one transaction.

    Returns the versions before and after (0: no schema). A schema already
    current is only read, so opening a store never waits for a writer.
    """
    before = _schema_version(connection)
    if before == SCHEMA_VERSION:
        return before, before
    connection.execute("BEGIN IMMEDIATE")
    try:
        before = _upgrade(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return before, SCHEMA_VERSION


def join(connection: sqlite3.Connection) -> None:
    """Ready the transaction open on someone else's connection for the store's writes.

    Migrates the schema within that transaction if needed, and takes SQLite's
    write lock at once, so that versions and positions are read and written
    under it and a transaction that read first cannot fail to upgrade later.
    A connection with no transaction open gets one (`BEGIN IMMEDIATE`) unless
    it is in autocommit mode (`isolation_level=None`), where no one would commit it.
    """
    if not connection.in_transaction:
        if connection.isolation_level is None:
            raise ValueError(
                "the connection has no transaction open and is in autocommit mode "
                "(isolation_level=None): BEGIN a transaction before writing events through it"
            )
        connection.execute("BEGIN IMMEDIATE")
    if _schema_version(connection) != SCHEMA_VERSION:
        _upgrade(connection)
    # A write that changes nothing still takes the write lock.
    connection.execute("UPDATE tidings_streams SET deleted = deleted WHERE 0")


def database_file(connection: sqlite3.Connection) -> str:
    """The path of the connection's main database file ("" for an in-memory one)."""
    for _, name, file in connection.execute("PRAGMA database_list"):
        if name == "main":
            return str(file)
    return ""


def _schema_version(connection: sqlite3.Connection) -> int:
    """The schema version of the database file, 0 when it has no schema yet."""
    known = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tidings_schema'"
    ).fetchone()
    if known is None:
        return 0
    (current,) = connection.execute(
        "SELECT coalesce(max(version), 0) FROM tidings_schema"
    ).fetchone()
    return int(current)


def _upgrade(connection: sqlite3.Connection) -> int:
    """Create or migrate the schema inside the connection's open transaction; the old version."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS tidings_schema ("
        " version INTEGER PRIMARY KEY,"
        " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    (current,) = connection.execute(
        "SELECT coalesce(max(version), 0) FROM tidings_schema"
    ).fetchone()
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the event store schema is at version {current}, newer than this release "
            f"of tidings knows ({SCHEMA_VERSION}): upgrade tidings"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[version]:
            connection.execute(statement)
        connection.execute("INSERT INTO tidings_schema (version) VALUES (?)", (version,))
    return int(current)


def append(
    connection: sqlite3.Connection,
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
) -> AppendResult:
    """Append in the connection's writing transaction; see `AsyncEventStore.append`.

    Its typed errors (`WrongExpectedVersion`, `EventIdConflict`) are raised
    before it writes anything: a group commit goes on without that append.
    """
    repeated = repeated_append(stream, events, _stored(connection, events))
    if repeated is not None:
        return repeated
    row = connection.execute(_STREAM_STATE, (stream,)).fetchone()
    last = 0 if row is None else int(row[0] or 0)
    current = None if row is None or row[1] else last
    check_expected_version(stream, expected, current)
    if not events:
        return AppendResult(stream, current or 0, ())
    # The write lock is held since BEGIN IMMEDIATE, so no one else can take these positions.
    (top,) = connection.execute("SELECT coalesce(max(position), 0) FROM tidings_events").fetchone()
    category = category_of(stream)
    connection.executemany(
        _INSERT,
        [
            (
                top + offset,
                stream,
                category,
                last + offset,
                event.event_id.bytes,
                event.type,
                event.schema_version,
                event.data,
                event.correlation_id.bytes,
                None if event.causation_id is None else event.causation_id.bytes,
                event.occurred_at.isoformat(),
                event.headers,
            )
            for offset, event in enumerate(events, start=1)
        ],
    )
    version = last + len(events)
    if row is None:
        connection.execute(_NEW_STREAM, (stream, category))
    elif row[1]:
        connection.execute(_REVIVE_STREAM, (stream,))
    return AppendResult(stream, version, tuple(range(top + 1, top + len(events) + 1)))


def delete_stream(connection: sqlite3.Connection, stream: str, expected: ExpectedVersion) -> None:
    """Soft-delete in the connection's writing transaction; see `AsyncEventStore.delete_stream`."""
    row = connection.execute(_STREAM_STATE, (stream,)).fetchone()
    current = None if row is None or row[1] else int(row[0] or 0)
    check_expected_version(stream, expected, current)
    if current is None:
        raise StreamNotFound(stream)
    connection.execute(
        "UPDATE tidings_streams SET deleted = 1, first_version = ? WHERE name = ?",
        (current + 1, stream),
    )


def read_stream(
    connection: sqlite3.Connection,
    stream: str,
    from_version: int | None,
    backwards: bool,
    limit: int | None,
) -> list[RecordedEvent]:
    """The visible events of `stream`; see `AsyncEventStore.read_stream`."""
    if backwards:
        start = _MAX_VERSION if from_version is None else from_version
        sql = _READ_BACKWARDS
    else:
        start = 1 if from_version is None else from_version
        sql = _READ_FORWARDS
    rows = connection.execute(sql, (stream, start, stream, -1 if limit is None else limit))
    return list(map(_record, rows))


def read_all(
    connection: sqlite3.Connection,
    after: int,
    limit: int | None,
    categories: Collection[str] | None,
    types: Collection[str] | None,
) -> list[RecordedEvent]:
    """Events of `$all` after `after`; see `AsyncEventStore.read_all`."""
    if (
        limit == 0
        or (categories is not None and not categories)
        or (types is not None and not types)
    ):
        return []
    sql = f"SELECT {_COLUMNS} FROM tidings_events WHERE position > ?"
    params: list[Any] = [after]
    for column, values in (("category", categories), ("type", types)):
        if values is not None:
            sql += f" AND {column} IN ({', '.join('?' * len(values))})"
            params.extend(values)
    sql += " ORDER BY position LIMIT ?"
    params.append(-1 if limit is None else limit)
    return list(map(_record, connection.execute(sql, params)))


def read_correlated(
    connection: sqlite3.Connection, correlation_id: UUID, limit: int | None
) -> list[RecordedEvent]:
    """The events of one correlation id, in `$all` order; see `AsyncEventStore.read_correlated`."""
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM tidings_events WHERE correlation_id = ? ORDER BY position LIMIT ?",
        (correlation_id.bytes, -1 if limit is None else limit),
    )
    return list(map(_record, rows))


def head_position(connection: sqlite3.Connection) -> int:
    """The last position of `$all`, 0 when it is empty: the row id's maximum, found at once."""
    (position,) = connection.execute(
        "SELECT coalesce(max(position), 0) FROM tidings_events"
    ).fetchone()
    return int(position)


def stream_version(connection: sqlite3.Connection, stream: str) -> int | None:
    """The last version of a stream that exists and is not deleted, else None."""
    row = connection.execute(
        f"SELECT {_LAST_VERSION} FROM tidings_streams WHERE name = ? AND deleted = 0", (stream,)
    ).fetchone()
    return None if row is None else int(row[0] or 0)


def list_streams(
    connection: sqlite3.Connection,
    category: str | None,
    after: str | None,
    limit: int,
    include_deleted: bool,
) -> list[StreamInfo]:
    """A page of streams in name order; see `AsyncEventStore.list_streams`."""
    # BINARY collation compares UTF-8 bytes: the code point order the protocol promises.
    sql = (
        f"SELECT name, {_LAST_VERSION}, first_version, deleted FROM tidings_streams WHERE name > ?"
    )
    params: list[Any] = [after or ""]
    if category is not None:
        sql += " AND category = ?"
        params.append(category)
    if not include_deleted:
        sql += " AND deleted = 0"
    sql += " ORDER BY name LIMIT ?"
    params.append(limit)
    return [
        StreamInfo(name, version or 0, first_version, bool(deleted))
        for name, version, first_version, deleted in connection.execute(sql, params)
    ]


def save_snapshot(connection: sqlite3.Connection, snapshot: Snapshot) -> bool:
    """Keep a snapshot in the connection's writing transaction; see `AsyncEventStore`."""
    cursor = connection.execute(
        "INSERT INTO tidings_snapshots (stream, version, shape, data)"
        " SELECT name, ?, ?, ? FROM tidings_streams"
        f" WHERE name = ? AND deleted = 0 AND ? BETWEEN first_version AND {_LAST_VERSION}"
        " ON CONFLICT (stream) DO UPDATE"
        " SET version = excluded.version, shape = excluded.shape, data = excluded.data"
        " WHERE excluded.version >= tidings_snapshots.version",
        (snapshot.version, snapshot.shape, snapshot.data, snapshot.stream, snapshot.version),
    )
    return cursor.rowcount > 0


def read_snapshot(connection: sqlite3.Connection, stream: str) -> Snapshot | None:
    """The stream's snapshot, unless it predates the stream's deletion or revival."""
    row = connection.execute(
        "SELECT s.stream, s.version, s.shape, s.data FROM tidings_snapshots s"
        " JOIN tidings_streams t ON t.name = s.stream"
        " WHERE s.stream = ? AND t.deleted = 0 AND s.version >= t.first_version",
        (stream,),
    ).fetchone()
    return None if row is None else Snapshot(*row)


def _stored(
    connection: sqlite3.Connection, events: Sequence[NewEvent]
) -> list[RecordedEvent | None]:
    """For each event, the stored event with its id, or None."""
    ids = [event.event_id.bytes for event in events]
    found: dict[UUID, RecordedEvent] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        placeholders = ", ".join("?" * len(chunk))
        sql = f"SELECT {_COLUMNS} FROM tidings_events WHERE event_id IN ({placeholders})"
        for row in connection.execute(sql, chunk):
            record = _record(row)
            found[record.event_id] = record
    return [found.get(event.event_id) for event in events]


# Bound once: reads build a record per event, and these lookups are a fair share of it.
_new = object.__new__
_set = object.__setattr__
_from_bytes = int.from_bytes
_UNKNOWN = SafeUUID.unknown
_from_iso = datetime.fromisoformat


def _record(row: Any) -> RecordedEvent:
    """The stored event of a row in `_COLUMNS` order.

    Its UUIDs are made from their 16 bytes as `UUID(bytes=...)` makes them,
    without that call's argument checks: the store wrote these bytes from
    UUIDs, and the checks cost more than the rest of a read (psycopg loads
    UUIDs the same way).
    """
    event_id: UUID = _new(UUID)
    _set(event_id, "int", _from_bytes(row[3], "big"))
    _set(event_id, "is_safe", _UNKNOWN)
    correlation_id: UUID = _new(UUID)
    _set(correlation_id, "int", _from_bytes(row[7], "big"))
    _set(correlation_id, "is_safe", _UNKNOWN)
    causation_id = row[8]
    return RecordedEvent(
        row[0],
        row[1],
        row[2],
        event_id,
        row[4],
        row[5],
        row[6],
        correlation_id,
        None if causation_id is None else _uuid(causation_id),
        _from_iso(row[9]),
        row[10],
    )


def _uuid(raw: bytes) -> UUID:
    """`UUID(bytes=raw)`, made as `_record` makes its UUIDs."""
    made: UUID = _new(UUID)
    _set(made, "int", _from_bytes(raw, "big"))
    _set(made, "is_safe", _UNKNOWN)
    return made
