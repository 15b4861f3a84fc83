"""The SQL of the PostgreSQL event store: its schema, migrations, statements and error mapping.

Both the async and the blocking PostgreSQL store run these statements; this
module holds no connection and does no I/O. All the store's objects live in
one schema (`tidings` unless told otherwise):

- `events`: every event; `position` is its place in `$all` (see
  `tidings.store._async.postgres` for how it is made and why no reader skips
  one), `UNIQUE (stream, version)` and `UNIQUE (event_id)` back the append,
  indexes on `(category, position)` and `(correlation_id, position)` serve reads.
- `streams`: each stream's last version, the position of its last event, and
  its soft delete (`deleted`, `first_version`).
- `schema_version`: the migrations applied, so a later release can migrate a
  database written by this one.
- `append(...)`: a PL/pgSQL function that appends one batch in one call.
- `lock_stream(stream)`: the transaction-scoped lock that serialises the
  writers of one stream, and only of that stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql

from tidings.errors import (
    ConcurrencyError,
    ConfigurationError,
    EventIdConflict,
    InvalidValue,
    StoreUnavailable,
    TidingsError,
    WrongExpectedVersion,
)
from tidings.store.records import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    StreamState,
    category_of,
)

__all__ = [
    "EVENTS_PER_TRANSACTION",
    "SCHEMA_VERSION",
    "Statements",
    "append_params",
    "appended",
    "check_batch",
    "check_schema_version",
    "converted",
    "migrations",
    "notify_channel",
    "read_all_params",
    "snapshot_conflict",
    "translated",
]

SCHEMA_VERSION = 3
"""The schema this release writes; databases at an older version are migrated on first use."""

INDEX_BITS = 20
EVENTS_PER_TRANSACTION = 1 << INDEX_BITS
"""Positions are `transaction id * 2**20 + index`: the most events one transaction appends."""

_EVENT_ID_UNIQUE = "events_event_id_unique"

_COLUMNS = (
    "position, stream, version, event_id, type, schema_version, data,"
    " correlation_id, causation_id, occurred_at, headers"
)

# Expected versions as the append function takes them; exact versions are >= 0.
_EXPECTED = {StreamState.ANY: -1, StreamState.NO_STREAM: -2, StreamState.STREAM_EXISTS: -3}

_APPEND_BODY = """
DECLARE
    v_count integer := cardinality(p_event_ids);
    v_deleted boolean;
    v_last_position bigint;
    v_base bigint;
BEGIN
    PERFORM {lock_stream}(p_stream);
    IF EXISTS (SELECT FROM {events} e WHERE e.event_id = ANY (p_event_ids)) THEN
        o_outcome := 'repeated';
        RETURN;
    END IF;
    SELECT s.version, s.deleted, s.last_position INTO o_last, v_deleted, v_last_position
    FROM {streams} s WHERE s.name = p_stream;
    IF NOT FOUND THEN
        o_last := 0;
    ELSIF NOT v_deleted THEN
        o_current := o_last;
    END IF;
    IF NOT (p_expected = -1
            OR (p_expected = -2 AND o_current IS NULL)
            OR (p_expected = -3 AND o_current IS NOT NULL)
            OR (p_expected >= 0 AND coalesce(o_current, 0) = p_expected)) THEN
        o_outcome := 'conflict';
        RETURN;
    END IF;
    o_outcome := 'appended';
    IF v_count = 0 THEN
        RETURN;
    END IF;
    o_tx := pg_current_xact_id()::text::bigint;
    IF o_tx >= {tx_limit} THEN
        RAISE EXCEPTION 'transaction id % is too large for event positions', o_tx;
    END IF;
    IF v_last_position >= (o_tx + 1) * {index_span} THEN
        o_outcome := 'reordered';
        RETURN;
    END IF;
    v_base := o_tx * {index_span} + p_index;
    INSERT INTO {events} (position, stream, category, version, event_id, type,
                          schema_version, data, correlation_id, causation_id, occurred_at, headers)
    SELECT v_base + b.n - 1, p_stream, p_category, o_last + b.n, b.event_id, b.type,
           b.schema_version, b.data, b.correlation_id, b.causation_id, b.occurred_at, b.headers
    FROM unnest(p_event_ids, p_types, p_schema_versions, p_data, p_correlation_ids,
                p_causation_ids, p_occurred_at, p_headers)
         WITH ORDINALITY AS b(event_id, type, schema_version, data, correlation_id,
                              causation_id, occurred_at, headers, n);
    INSERT INTO {streams} (name, category, version, last_position)
    VALUES (p_stream, p_category, o_last + v_count, v_base + v_count - 1)
    ON CONFLICT (name) DO UPDATE
    SET version = excluded.version, last_position = excluded.last_position, deleted = false;
END
"""

# `SET enable_seqscan = off`: PL/pgSQL keeps a session's plans, and one made while the
# tables were a few pages long must not stay a sequential scan as they grow.
_CREATE_APPEND = """
CREATE FUNCTION {append}(
    p_stream text, p_category text, p_expected bigint, p_index bigint,
    p_event_ids uuid[], p_types text[], p_schema_versions integer[], p_data bytea[],
    p_correlation_ids uuid[], p_causation_ids uuid[], p_occurred_at timestamptz[],
    p_headers bytea[],
    OUT o_outcome text, OUT o_tx bigint, OUT o_last bigint, OUT o_current bigint)
LANGUAGE plpgsql
SET enable_seqscan = off
AS {body}
"""

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""
        CREATE TABLE {{events}} (
            position bigint PRIMARY KEY,
            stream text COLLATE "C" NOT NULL,
            category text COLLATE "C" NOT NULL,
            version bigint NOT NULL,
            event_id uuid NOT NULL,
            type text NOT NULL,
            schema_version integer NOT NULL,
            data bytea NOT NULL,
            correlation_id uuid NOT NULL,
            causation_id uuid,
            occurred_at timestamptz NOT NULL,
            headers bytea NOT NULL,
            CONSTRAINT events_stream_version_unique UNIQUE (stream, version),
            CONSTRAINT {_EVENT_ID_UNIQUE} UNIQUE (event_id)
        )
        """,
        "CREATE INDEX events_category_position ON {events} (category, position)",
        """
        CREATE TABLE {streams} (
            name text COLLATE "C" PRIMARY KEY,
            category text COLLATE "C" NOT NULL,
            version bigint NOT NULL,
            first_version bigint NOT NULL DEFAULT 1,
            deleted boolean NOT NULL DEFAULT false,
            last_position bigint NOT NULL
        )
        """,
        "CREATE INDEX streams_category_name ON {streams} (category, name)",
        "CREATE FUNCTION {lock_stream}(p_stream text) RETURNS void LANGUAGE sql AS {lock_body}",
        _CREATE_APPEND,
    ),
    2: (
        """
        CREATE TABLE {snapshots} (
            stream text COLLATE "C" PRIMARY KEY,
            version bigint NOT NULL,
            shape text NOT NULL,
            data bytea NOT NULL
        )
        """,
    ),
    3: ("CREATE INDEX events_correlation_position ON {events} (correlation_id, position)",),
}


def _names(schema: str) -> dict[str, sql.Composable]:
    # Advisory locks taken with two int4 keys never meet the single bigint keys
    # applications use; the first key keeps each schema's streams apart.
    lock_class = int.from_bytes(
        hashlib.blake2b(schema.encode(), digest_size=4).digest(), "big", signed=True
    )
    return {
        "schema": sql.Identifier(schema),
        "events": sql.Identifier(schema, "events"),
        "streams": sql.Identifier(schema, "streams"),
        "snapshots": sql.Identifier(schema, "snapshots"),
        "schema_version": sql.Identifier(schema, "schema_version"),
        "append": sql.Identifier(schema, "append"),
        "lock_stream": sql.Identifier(schema, "lock_stream"),
        "lock_class": sql.Literal(lock_class),
        "tx_limit": sql.Literal(1 << (63 - INDEX_BITS)),
        "index_span": sql.Literal(EVENTS_PER_TRANSACTION),
    }


def _render(template: str, names: dict[str, sql.Composable]) -> str:
    return sql.SQL(template).format(**names).as_string(None)


def migrations(schema: str) -> dict[int, list[str]]:
    """The statements that bring the schema from the previous version to each version."""
    names = _names(schema)
    names["lock_body"] = sql.Literal(
        _render("SELECT pg_advisory_xact_lock({lock_class}, hashtext(p_stream))", names)
    )
    names["body"] = sql.Literal(_render(_APPEND_BODY, names))
    return {
        version: [_render(statement, names) for statement in statements]
        for version, statements in _MIGRATIONS.items()
    }


@dataclass(frozen=True)
class Statements:
    """Every statement the store runs, with its schema's names filled in."""

    migration_lock: str
    create_schema: str
    create_schema_version: str
    schema_version_table: str
    current_schema_version: str
    record_schema_version: str
    append: str
    append_joined: str
    records_by_id: str
    read_forwards: str
    read_backwards: str
    read_all: dict[tuple[bool, bool], str]
    read_correlated: str
    head_position: str
    watermark: str
    stream_version: str
    list_streams: dict[tuple[bool, bool], str]
    lock_stream: str
    stream_state: str
    delete_stream: str
    save_snapshot: str
    read_snapshot: str
    channel: str
    notify: str
    transaction_id: str
    xact_status: str
    end_transaction: str
    set_lock_timeout: str
    set_search_path: str

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        if not isinstance(schema, str) or not schema:
            raise ValueError(f"invalid schema name {schema!r}")
        names = _names(schema)
        channel = notify_channel(schema)

        def render(template: str) -> str:
            return _render(template, names)

        read_stream = (
            f"SELECT {_COLUMNS} FROM {{events}} WHERE stream = %b AND version {{bound}} %b"
            " AND version >= (SELECT first_version FROM {streams} WHERE name = %b AND NOT deleted)"
            " ORDER BY version {order} LIMIT %b"
        )
        # Only events of transactions older than every running one: see the store's docstring.
        readable = "position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {index_span}"
        read_all = render(f"SELECT {_COLUMNS} FROM {{events}} WHERE position > %b AND {readable}")
        list_streams = render(
            "SELECT name, version, first_version, deleted FROM {streams} WHERE name > %b"
        )
        return cls(
            migration_lock="SELECT pg_advisory_xact_lock(hashtextextended(%b, 0))",
            create_schema=render("CREATE SCHEMA IF NOT EXISTS {schema}"),
            create_schema_version=render(
                "CREATE TABLE IF NOT EXISTS {schema_version} ("
                " version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ),
            schema_version_table=render("{schema_version}"),
            current_schema_version=render("SELECT max(version) FROM {schema_version}"),
            record_schema_version=render("INSERT INTO {schema_version} (version) VALUES (%b)"),
            append=render(
                "SELECT * FROM {append}(%b::text, %b::text, %b::bigint, %b::bigint,"
                " %b::uuid[], %b::text[], %b::integer[], %b::bytea[], %b::uuid[], %b::uuid[],"
                " %b::timestamptz[], %b::bytea[])"
            ),
            # In a transaction someone else began, its events so far are counted on the
            # server, so that every appender of the transaction gets positions of its own.
            append_joined=render(
                "WITH mine AS (SELECT pg_current_xact_id_if_assigned()::text::bigint"
                " * {index_span} AS base),"
                " next AS (SELECT coalesce((SELECT max(e.position) + 1 - mine.base"
                " FROM {events} e WHERE e.position >= mine.base"
                " AND e.position < mine.base + {index_span}), 0) AS index FROM mine)"
                " SELECT a.*, next.index FROM next, LATERAL {append}(%b::text, %b::text,"
                " %b::bigint, next.index, %b::uuid[], %b::text[], %b::integer[], %b::bytea[],"
                " %b::uuid[], %b::uuid[], %b::timestamptz[], %b::bytea[]) a"
            ),
            records_by_id=render(
                f"SELECT {_COLUMNS} FROM {{events}} WHERE event_id = ANY (%b::uuid[])"
            ),
            read_forwards=_render(
                read_stream, {**names, "bound": sql.SQL(">="), "order": sql.SQL("ASC")}
            ),
            read_backwards=_render(
                read_stream, {**names, "bound": sql.SQL("<="), "order": sql.SQL("DESC")}
            ),
            read_all={
                (by_category, by_type): read_all
                + (" AND category = ANY (%b::text[])" if by_category else "")
                + (" AND type = ANY (%b::text[])" if by_type else "")
                + " ORDER BY position LIMIT %b"
                for by_category in (False, True)
                for by_type in (False, True)
            },
            read_correlated=render(
                f"SELECT {_COLUMNS} FROM {{events}} WHERE correlation_id = %b AND {readable}"
                " ORDER BY position LIMIT %b"
            ),
            head_position=render(
                f"SELECT position FROM {{events}} WHERE {readable} ORDER BY position DESC LIMIT 1"
            ),
            # One snapshot for all: its xmin bounds what readers see, as in `readable`.
            # pg_stat_activity shows 32-bit transaction ids, the xmin's low half.
            watermark=render(
                "WITH bound AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                " AS xmin),"
                " oldest AS (SELECT min(started) AS started FROM ("
                " SELECT a.xact_start AS started FROM pg_stat_activity a, bound"
                " WHERE a.backend_xid::text::bigint = bound.xmin % 4294967296"
                " UNION ALL SELECT p.prepared FROM pg_prepared_xacts p, bound"
                " WHERE p.transaction::text::bigint = bound.xmin % 4294967296) s)"
                " SELECT coalesce((SELECT position FROM {events}"
                " WHERE position < bound.xmin * {index_span} ORDER BY position DESC LIMIT 1), 0),"
                " coalesce((SELECT max(position) FROM {events}), 0),"
                " (SELECT count(*) FROM {events} WHERE position >= bound.xmin * {index_span}),"
                " extract(epoch FROM clock_timestamp() - oldest.started)::float8"
                " FROM bound, oldest"
            ),
            stream_version=render("SELECT version FROM {streams} WHERE name = %b AND NOT deleted"),
            list_streams={
                (by_category, with_deleted): list_streams
                + (" AND category = %b" if by_category else "")
                + ("" if with_deleted else " AND NOT deleted")
                + " ORDER BY name LIMIT %b"
                for by_category in (False, True)
                for with_deleted in (False, True)
            },
            lock_stream=render("SELECT {lock_stream}(%b)"),
            stream_state=render("SELECT version, deleted FROM {streams} WHERE name = %b"),
            delete_stream=render(
                "UPDATE {streams} SET deleted = true, first_version = version + 1 WHERE name = %b"
            ),
            # Kept only at a version the stream reached since it was last revived.
            save_snapshot=render(
                "INSERT INTO {snapshots} AS kept (stream, version, shape, data)"
                " SELECT name, %b, %b, %b FROM {streams}"
                " WHERE name = %b AND NOT deleted AND %b BETWEEN first_version AND version"
                " ON CONFLICT (stream) DO UPDATE"
                " SET version = excluded.version, shape = excluded.shape, data = excluded.data"
                " WHERE excluded.version >= kept.version"
            ),
            read_snapshot=render(
                "SELECT s.stream, s.version, s.shape, s.data FROM {snapshots} s"
                " JOIN {streams} t ON t.name = s.stream"
                " WHERE s.stream = %b AND NOT t.deleted AND s.version >= t.first_version"
            ),
            channel=notify_channel(schema),
            notify=_render("SELECT pg_notify({channel}, %b)", {"channel": sql.Literal(channel)}),
            transaction_id="SELECT pg_current_xact_id_if_assigned()::text::bigint",
            xact_status="SELECT pg_xact_status(%b::bigint::text::xid8)",
            # pg_stat_activity shows the 32-bit form of the id: process and id together name
            # the one transaction, whatever else that process has run since.
            end_transaction=(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = %b AND backend_xid::text::bigint = %b::bigint %% 4294967296"
            ),
            set_lock_timeout="SELECT set_config('lock_timeout', %b, true)",
            set_search_path=render("SET search_path TO {schema}, public"),
        )


def notify_channel(schema: str) -> str:
    """The channel on which commits that appended to `schema` are announced (`NOTIFY`).

    The payload is the last position the transaction appended. A channel name
    is at most 63 bytes; a longer schema name is shortened with a hash.
    """
    channel = f"tidings_{schema}"
    if len(channel.encode()) <= 63:
        return channel
    return "tidings_" + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()


def check_batch(index: int, events: Sequence[NewEvent]) -> None:
    """Refuse events that would not fit in the transaction's range of positions.

    Checked before the batch's events are (`check_new_events`), which would take long.
    """
    if isinstance(events, Sequence) and index + len(events) > EVENTS_PER_TRANSACTION:
        raise InvalidValue(
            f"a transaction appends at most {EVENTS_PER_TRANSACTION} events to PostgreSQL;"
            f" this one would reach {index + len(events)}"
        )


def check_schema_version(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the event store schema is at version {current}, newer than this release "
            f"of tidings knows ({SCHEMA_VERSION}): upgrade tidings"
        )


def append_params(
    stream: str, events: Sequence[NewEvent], expected: ExpectedVersion, index: int
) -> tuple[Any, ...]:
    """The arguments of the append function: the batch as one array per column."""
    return (
        stream,
        category_of(stream),
        _EXPECTED[expected] if isinstance(expected, StreamState) else expected,
        index,
        [event.event_id for event in events],
        [event.type for event in events],
        [event.schema_version for event in events],
        [event.data for event in events],
        [event.correlation_id for event in events],
        [event.causation_id for event in events],
        [event.occurred_at for event in events],
        [event.headers for event in events],
    )


def appended(
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    index: int,
    row: tuple[Any, ...],
) -> AppendResult | None:
    """Where the append function's batch landed; None when its event ids were stored before."""
    outcome, tx, last, current = row
    if outcome == "repeated":
        return None
    if outcome == "conflict":
        raise WrongExpectedVersion(stream, expected, current)
    if outcome == "reordered":
        raise ConcurrencyError(
            f"stream {stream!r}: a transaction that started writing after this one appended to "
            "it first; retry the transaction, so that the stream's events stay in version "
            "order in $all"
        )
    if not events:
        return AppendResult(stream, current or 0, ())
    first = (tx << INDEX_BITS) + index
    return AppendResult(stream, last + len(events), tuple(range(first, first + len(events))))


_CREATED_MEANWHILE = (
    errors.DuplicateSchema,
    errors.DuplicateTable,
    errors.DuplicateObject,
    errors.DuplicateFunction,
)


def converted(exc: psycopg.Error) -> TidingsError | None:
    """The tidings error a PostgreSQL error of the store's statements means, if any.

    A unique violation on the store's tables and a transaction rolled back
    for a serialization failure or a deadlock (SQLSTATE class 40) mean that
    a concurrent transaction wrote first: under REPEATABLE READ or
    SERIALIZABLE, a transaction's snapshot predates the stream lock it
    waited for, so it does not see the winner and fails on the constraint
    the lock would otherwise have spared it. All are `ConcurrencyError`
    (retry the transaction), but a repeated event id, `EventIdConflict`.
    """
    if isinstance(exc, errors.UniqueViolation):
        if exc.diag.constraint_name == _EVENT_ID_UNIQUE:
            return EventIdConflict(f"an event id of the batch was stored meanwhile: {exc}")
        return ConcurrencyError(
            "a concurrent transaction this one's snapshot does not see wrote first; "
            f"retry the transaction (PostgreSQL: {exc.diag.message_primary})"
        )
    if (exc.sqlstate or "").startswith("40"):  # serialization failure, deadlock
        return ConcurrencyError(f"retry the transaction (PostgreSQL: {exc})")
    if isinstance(exc, _CREATED_MEANWHILE):  # a joined transaction's snapshot, at first use
        return ConcurrencyError(
            f"a concurrent first use created the store's schema; retry (PostgreSQL: {exc})"
        )
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"PostgreSQL: {exc}")
    return None


def snapshot_conflict(exc: psycopg.Error) -> bool:
    """Whether a statement failed only for a snapshot older than the lock it waited for.

    Such a statement, run again in a new READ COMMITTED transaction, sees
    what it missed: a repeated event id is then found as the batch it
    repeats, a stream's versions as they now are.
    """
    return isinstance(exc, errors.UniqueViolation) or (exc.sqlstate or "").startswith("40")


@contextmanager
def translated() -> Iterator[None]:
    """Raise PostgreSQL errors that have a meaning in tidings as tidings errors."""
    try:
        yield
    except psycopg.Error as exc:
        error = converted(exc)
        if error is None:
            raise
        raise error from exc


def read_all_params(
    after: int, limit: int | None, categories: Collection[str] | None, types: Collection[str] | None
) -> tuple[tuple[bool, bool], list[Any]]:
    """The variant of the `$all` query for these filters, and its parameters."""
    params: list[Any] = [after]
    if categories is not None:
        params.append(list(categories))
    if types is not None:
        params.append(list(types))
    params.append(limit)
    return (categories is not None, types is not None), params
