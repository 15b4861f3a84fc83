"""The PostgreSQL event store: psycopg 3 on a connection pool, for production.

Every event's position in `$all` is made from the id of the transaction that
wrote it: `position = xid * 2**20 + index`, where `xid` is
`pg_current_xact_id()` and `index` counts the events that transaction
appended before this one. A reader of `$all` returns only events written by
transactions whose id is below `pg_snapshot_xmin(pg_current_snapshot())`,
the oldest transaction still running when its snapshot was taken, in
position order.

Why a reader cannot skip an event: every transaction with an id below that
xmin has ended, committed (so its events are visible in the reader's
snapshot) or rolled back (so they never will be). Every transaction that can
still commit, running or not yet given an id, has an id of at least xmin,
so all its events get positions above every position the reader returned. A
reader that carries on after the last position it saw therefore never
misses an event that commits later with a smaller position. Neither a timer
nor a lock among writers is involved.

What follows from it:

- Positions increase strictly but are not dense: each transaction's events
  start at a multiple of 2**20, and every writing transaction of the
  cluster uses up an id.
- A transaction that has written anything, in any database of the cluster,
  holds every reader back until it ends. Readers lag behind a long-running
  writing transaction, they never skip it; keep writing transactions short
  and bound idle ones (`idle_in_transaction_session_timeout`).
- A transaction appends at most 2**20 events, and positions fit in a bigint
  while transaction ids stay below 2**43 (8.8 trillion transactions).

Writers are not serialised. An append locks its stream alone (a
transaction-scoped advisory lock, with `UNIQUE (stream, version)` behind it),
so appends to one stream queue and appends to different streams run at once.
When an append is a transaction's first write, the lock is taken before the
transaction has an id, so a stream's later writer always has the larger id
and the stream's events stay in version order in `$all`. A transaction that
wrote something first (and so got its id early) may find its stream appended
to meanwhile by a transaction with a larger id; rather than put the stream
out of order, that append raises `ConcurrencyError`, and a retry, with a new
and larger id, succeeds.

A sequence would not do: transaction T1 takes position 10, T2 takes 11 and
commits first, and a reader at 11 never sees 10. Nor would a sequence read
below the snapshot's xmin: a transaction gets its id at its first write, often
an application's own, so the order of ids and of sequence numbers differ.

An append is one call of the schema's `append` function (see
`tidings.store.postgres_sql`): lock, repeated-id check, expected version and
inserts in one round trip. Outside a transaction it runs in autocommit, one
statement in all. The schema is created on first use, under an advisory lock,
so that concurrent first users do not race.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self
from uuid import UUID

import anyio  # sync: import threading
import psycopg
from psycopg import AsyncConnection, IsolationLevel
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow, args_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from tidings.errors import StoreUnavailable, StreamNotFound, TransactionClosed
from tidings.observability import hooks
from tidings.observability.hooks import ALL
from tidings.store._async.postgres_outcomes import AsyncCommitOutcomes, lost
from tidings.store.checks import (
    check_expected_version,
    check_list_streams,
    check_new_events,
    check_read_all,
    check_read_correlated,
    check_read_stream,
    check_snapshot,
    check_stream,
    check_stream_name,
    repeated_append,
)
from tidings.store.placeholders import qmark_to_format
from tidings.store.postgres_batch import BatchOvertaken, StatementPipeline
from tidings.store.postgres_notifier import CommitNotifier
from tidings.store.postgres_sql import (
    INDEX_BITS,
    SCHEMA_VERSION,
    Statements,
    append_params,
    appended,
    check_batch,
    check_schema_version,
    converted,
    migrations,
    read_all_params,
    snapshot_conflict,
    translated,
)
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

__all__ = ["AsyncPostgresJoinedWriter", "AsyncPostgresStore", "AsyncPostgresTransaction"]

SYSTEM = "postgresql"  # the `db.system` of its read spans

_Connection = AsyncConnection[TupleRow]


class AsyncPostgresStore:
    """An event store in a PostgreSQL schema, on a pool of `min_size` to `max_size` connections.

    `conninfo` is a libpq connection string or URL. `timeout` is how long a
    call waits for a connection before it raises `StoreUnavailable`. The
    schema (`schema`, created if missing) is migrated on first use; several
    stores, in one process or many, may share it.
    """

    read_ahead = True
    """A reader catching up reads its next page while it handles the last (see
    `tidings.projections._async.readahead`): the read waits on the server, on a
    connection of its own, while the handling's statements run on another."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "tidings",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        self.schema = schema
        self.conninfo = conninfo
        self._sql = Statements.for_schema(schema)
        self.notify_channel = self._sql.channel
        """Where commits that appended are announced, with their last position (LISTEN)."""
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
        )
        self._outcomes = AsyncCommitOutcomes(conninfo, self._pool, self._sql, timeout)
        self._notifier = CommitNotifier(conninfo, self._sql.notify)
        self._lock = anyio.Lock()  # sync: self._lock = threading.Lock()
        self._ready = False
        self._migration = (0, 0)  # the schema versions before and after the first use
        self._closed = False

    async def _configure(self, connection: _Connection) -> None:
        """Put the store's schema first on each connection's search path.

        The store's own statements name their schema; an application's
        tables made without one (a read model's) go there too, beside the
        log, and names it does not hold are still found in `public`.
        """
        await connection.execute(self._sql.set_search_path)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncPostgresTransaction]:
        await self._prepare()
        with translated():
            connection = await self._pool.getconn()
        try:
            with translated():
                await connection.execute("BEGIN")
            tx = AsyncPostgresTransaction(connection, self._sql, self._outcomes, self._notifier)
            try:
                yield tx
            except BaseException:
                await _shielded(tx.rollback)
                raise
            if not tx.finished:
                await tx.commit()
        finally:
            await _shielded(lambda: self._pool.putconn(connection))

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_batch(0, events)
        check_new_events(stream, events, expected_version)
        async with self._connection() as connection:
            try:
                # In autocommit the statement is a transaction of its own.
                result, stored = await _append(
                    connection, self._sql, stream, events, expected_version, 0
                )
            except psycopg.Error as exc:
                lost_once = lost(connection)
                if not (lost_once or snapshot_conflict(exc)):
                    raise
            else:
                if stored:
                    self._notifier.notify(result.positions[-1])
                return result

        # The statement may have committed before its connection went, or its snapshot
        # predates its stream's lock: an append of the same ids runs again safely.
        async def again(connection: _Connection) -> AppendResult:
            result, stored = await _append(
                connection, self._sql, stream, events, expected_version, 0
            )
            if stored:
                self._notifier.notify(result.positions[-1])
            return result

        return await self._outcomes.again(again, lost_once=lost_once)

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        check_read_stream(stream, from_version, limit)
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            async with self._connection() as connection:
                records = await _read_stream(
                    connection, self._sql, stream, from_version, backwards, limit
                )
            reading.read(len(records))
        return records

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        categories: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        check_read_all(after, limit, categories, types)
        variant, params = read_all_params(after, limit, categories, types)
        with hooks.reading(SYSTEM, "read_all", ALL) as reading:
            async with self._connection() as connection:
                cursor = connection.cursor(row_factory=args_row(RecordedEvent), binary=True)
                await cursor.execute(self._sql.read_all[variant], params)
                records = await cursor.fetchall()
            reading.read(len(records))
        return records

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        check_read_correlated(correlation_id, limit)
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=args_row(RecordedEvent), binary=True)
            await cursor.execute(self._sql.read_correlated, (correlation_id, limit))
            return await cursor.fetchall()

    async def head_position(self) -> int:
        async with self._connection() as connection:
            cursor = await connection.execute(self._sql.head_position, binary=True)
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def watermark(self) -> Watermark:
        """Events committed but not yet readable, and how long the oldest writer has run.

        Readers see events below the oldest transaction still running in the
        cluster (see the module's docstring). That transaction's age is read
        from `pg_stat_activity` (or `pg_prepared_xacts`), which shows it only
        to a role that may see the session holding it (`pg_read_all_stats`).
        """
        async with self._connection() as connection:
            cursor = await connection.execute(self._sql.watermark, binary=True)
            row = await cursor.fetchone()
        assert row is not None
        head, last, held_back, held_for = row
        if not held_back:
            return Watermark(int(head), int(last), 0, 0.0)
        return Watermark(
            int(head), int(last), int(held_back), None if held_for is None else float(held_for)
        )

    async def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        async with self._connection() as connection:
            cursor = await connection.execute(self._sql.stream_version, (stream,), binary=True)
            row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def list_streams(
        self,
        category: str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> list[StreamInfo]:
        check_list_streams(category, after, limit)
        params: list[Any] = [after or ""]
        if category is not None:
            params.append(category)
        params.append(limit)
        query = self._sql.list_streams[category is not None, include_deleted]
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=args_row(StreamInfo), binary=True)
            await cursor.execute(query, params)
            return await cursor.fetchall()

    async def delete_stream(
        self, stream: str, expected_version: ExpectedVersion = StreamState.ANY
    ) -> None:
        check_stream(stream, expected_version)
        async with self.transaction() as tx:
            await tx._delete(stream, expected_version)

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        check_snapshot(snapshot)
        params = (
            snapshot.version,
            snapshot.shape,
            snapshot.data,
            snapshot.stream,
            snapshot.version,
        )

        async def save(connection: _Connection) -> bool:
            cursor = await connection.execute(self._sql.save_snapshot, params, binary=True)
            return cursor.rowcount > 0

        async with self._connection() as connection:
            try:
                return await save(connection)
            except psycopg.Error as exc:
                lost_once = lost(connection)
                if not (lost_once or snapshot_conflict(exc)):
                    raise
        # Saving a snapshot twice keeps it once, as saving it once does.
        return await self._outcomes.again(save, lost_once=lost_once)

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_name(stream)
        async with self._connection() as connection:
            cursor = connection.cursor(row_factory=args_row(Snapshot), binary=True)
            await cursor.execute(self._sql.read_snapshot, (stream,))
            return await cursor.fetchone()

    async def migrate(self) -> tuple[int, int]:
        """Create or migrate the schema now rather than at first use.

        Returns the schema versions before and after this store's first use
        of the database (0: there was no schema).
        """
        await self._prepare()
        return self._migration

    async def transaction_committed(
        self, transaction_id: int, backend_pid: int | None = None
    ) -> bool:
        """Whether the transaction `transaction_id` committed, for a commit whose answer was lost.

        The owner of a joined writer whose `COMMIT` failed with a lost
        connection reads the id before committing (`SELECT
        pg_current_xact_id()`) and asks here, on a fresh connection. Give
        `backend_pid` too (`connection.info.backend_pid`, also read before:
        a lost connection forgets it) so that a transaction its lost client
        left running is ended. Raises `CommitOutcomeUnknown` when the server
        cannot say within the store's `timeout`.
        """
        await self._prepare()
        return await self._outcomes.committed(transaction_id, backend_pid)

    def joined(self, connection: AsyncConnection[Any]) -> AsyncPostgresJoinedWriter:
        """Appends and reads in the transaction someone else holds open on `connection`.

        `connection` is a psycopg connection to this store's database, owned
        by, say, an ORM session: the events appended through the returned
        writer commit or roll back with that owner's transaction. Use one
        writer per transaction.
        """
        self._check_open()
        return AsyncPostgresJoinedWriter(connection, self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool; connections lent to open transactions close when they come back."""
        self._closed = True
        await anyio.to_thread.run_sync(self._notifier.close)  # sync: self._notifier.close()
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        """A pooled connection in autocommit, for one call; database errors become tidings ones."""
        await self._prepare()
        with translated():
            async with self._pool.connection() as connection:
                yield connection

    async def _prepare(self) -> None:
        """Open the pool and create or migrate the schema, once."""
        self._check_open()
        if self._ready:
            return
        async with self._lock:
            self._check_open()
            if self._ready:
                return
            with translated():
                await self._pool.open()
                async with self._pool.connection() as connection:
                    # The migration lock is waited for after the transaction's snapshot is
                    # taken: at REPEATABLE READ it would miss a concurrent first use's schema.
                    await connection.set_isolation_level(IsolationLevel.READ_COMMITTED)
                    self._migration = await _migrate(connection, self._sql, self.schema)
            self._ready = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"PostgreSQL schema {self.schema!r}: the store is closed")


class AsyncPostgresTransaction:
    """A transaction on one pooled connection.

    `connection` is that psycopg connection: the application's own statements
    on it commit or roll back together with the appended events. Leave
    `COMMIT` and `ROLLBACK` to this object. A statement that fails ends the
    whole transaction, as PostgreSQL does. A connection lost before `COMMIT`
    raises `StoreUnavailable`: the server keeps nothing of the transaction.
    One lost while it commits is resolved on a fresh connection (see
    `tidings.store._async.postgres_outcomes`): `commit` returns if the
    transaction committed, raises `StoreUnavailable` if it did not, and
    `CommitOutcomeUnknown` only if the server cannot say within the store's
    `timeout`.
    """

    def __init__(
        self,
        connection: _Connection,
        statements: Statements,
        outcomes: AsyncCommitOutcomes,
        notifier: CommitNotifier,
    ) -> None:
        self._connection = connection
        self.finished = False
        self._batching = False
        self._pipeline: StatementPipeline | None = None  # batched statements in flight
        self._sql = statements
        self._outcomes = outcomes
        self._notifier = notifier
        self._backend_pid = connection.info.backend_pid  # unknown once the connection is lost
        self._appended = 0  # events appended so far: the next event's index in positions
        self._last_position = 0  # announced after commit, so subscribers wake at once
        self._xid: int | None = None  # the transaction's id, once read with a batch

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_batch(self._appended, events)
        check_new_events(stream, events, expected_version)
        self._check_active()
        async with self._failing():
            result, stored = await _append(
                self._connection, self._sql, stream, events, expected_version, self._appended
            )
        self._appended += stored
        if stored:
            self._last_position = result.positions[-1]
        return result

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        check_read_stream(stream, from_version, limit)
        self._check_active()
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            async with self._failing():
                records = await _read_stream(
                    self._connection, self._sql, stream, from_version, backwards, limit
                )
            reading.read(len(records))
        return records

    async def lock_stream(self, stream: str) -> None:
        check_stream_name(stream)
        self._check_active()
        async with self._failing():
            await self._connection.execute(self._sql.lock_stream, (stream,))

    @property
    def connection(self) -> _Connection:
        """The psycopg connection, to use only when no batched statement is in flight."""
        if self._pipeline is not None:
            raise BatchOvertaken(
                "the connection was used while batched statements were in flight:"
                " use execute/query in a batched block, or run it unbatched"
            )
        return self._connection

    async def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self._check_active()
        if self._batching:  # nothing of the transaction is known until the batch ends
            self._send(statement, params)
            return
        async with self._failing():
            await self._connection.execute(qmark_to_format(statement), params)

    def _send(self, statement: str, params: Sequence[object], keep: bool = False) -> int:
        """Queue a batched statement in the pipeline (opened on the first); its number."""
        try:
            if self._pipeline is None:
                self._pipeline = StatementPipeline(self._connection)
            return self._pipeline.send(statement, params, keep=keep)
        except psycopg.Error as exc:
            error = converted(exc)
            if error is None:
                raise
            raise error from exc

    async def query(
        self, statement: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        self._check_active()
        await self._flush()  # a query sees the batch's writes before it
        async with self._failing():
            cursor = await self._connection.execute(qmark_to_format(statement), params)
            return [tuple(row) for row in await cursor.fetchall()]

    @asynccontextmanager
    async def batched(self) -> AsyncIterator[None]:
        """Send the block's `execute` statements without waiting for each (see `postgres_batch`).

        They are streamed to the server in one pipeline, each distinct
        statement text prepared once, and their results read when the
        block ends or a `query` needs their effect: a failing statement
        raises then, not where it was executed. `connection` cannot be used
        while statements are in flight (`BatchOvertaken`).
        """
        self._check_active()
        if self._batching:  # already batched
            yield
            return
        self._batching = True
        try:
            yield
            await self._flush()
        finally:
            self._batching = False
            pipeline, self._pipeline = self._pipeline, None
            if pipeline is not None:  # the block failed: the transaction is to roll back
                await _shielded(lambda: self._connection.wait(pipeline.abandon()))

    async def _flush(self) -> None:
        """Wait for the batched statements in flight, if any; raise the first one's failure.

        The transaction's id, which `commit` needs, is read with them while
        it is not known yet: no round trip of its own.
        """
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        xid = None
        if self._xid is None and not self._last_position:
            xid = pipeline.send(self._sql.transaction_id, (), keep=True)
        async with self._failing():
            # Read to the end even if cancelled: a connection left in pipeline mode is unusable.
            await _shielded(lambda: self._connection.wait(pipeline.finish()))
        if xid is not None and (result := pipeline.result(xid)) is not None:
            value = result.get_value(0, 0)
            self._xid = None if value is None else int(value)

    async def commit(self) -> None:
        self._check_active()
        await self._flush()
        if self._connection.info.transaction_status == TransactionStatus.INERROR:
            # PostgreSQL would answer COMMIT with a silent rollback.
            await self.rollback()
            raise TransactionClosed(
                "a statement failed earlier in this transaction, so PostgreSQL rolled it back"
            )
        self.finished = True
        with translated():
            transaction_id = await self._transaction_id()
        try:
            await self._connection.execute("COMMIT")
        except psycopg.Error as exc:
            if not lost(self._connection):
                raise (converted(exc) or exc) from exc
            await self._resolve(transaction_id, exc)
            return  # committed, with no connection to announce it on: subscribers poll
        if self._last_position:
            self._notifier.notify(self._last_position)

    async def _transaction_id(self) -> int | None:
        """The transaction's id, None while it has written nothing: read before `COMMIT`."""
        if self._last_position:  # positions are made of it
            return self._last_position >> INDEX_BITS
        if self._xid is not None:  # read with a batch: an id, once given, stays
            return self._xid
        cursor = await self._connection.execute(self._sql.transaction_id)
        row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def _resolve(self, transaction_id: int | None, exc: psycopg.Error) -> None:
        """Return if the transaction whose `COMMIT` lost its connection committed, else raise."""
        if transaction_id is not None and await self._outcomes.committed(
            transaction_id, self._backend_pid
        ):
            return
        raise StoreUnavailable(
            "PostgreSQL: the connection was lost while the transaction committed, and it was "
            f"rolled back: nothing was kept ({exc})"
        ) from exc

    async def rollback(self) -> None:
        """Roll back; on a lost connection there is nothing to do, the server dropped it all."""
        if self.finished:
            return
        self.finished = True
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None and not self._connection.broken:
            await self._connection.wait(pipeline.abandon())
        if not self._connection.broken:
            with contextlib.suppress(psycopg.OperationalError):
                await self._connection.execute("ROLLBACK")

    async def _delete(self, stream: str, expected: ExpectedVersion) -> None:
        async with self._failing():
            connection = self._connection
            await connection.execute(self._sql.lock_stream, (stream,))
            cursor = await connection.execute(self._sql.stream_state, (stream,), binary=True)
            row = await cursor.fetchone()
            current = None if row is None or row[1] else int(row[0])
            check_expected_version(stream, expected, current)
            if current is None:
                raise StreamNotFound(stream)
            await connection.execute(self._sql.delete_stream, (stream,))

    @asynccontextmanager
    async def _failing(self) -> AsyncIterator[None]:
        """Translate database errors; a transaction PostgreSQL aborted is over.

        Batched statements in flight are waited for first: what runs next
        comes after them.
        """
        if self._pipeline is not None:
            await self._flush()
        try:
            with translated():
                yield
        except BaseException:
            if self._connection.info.transaction_status != TransactionStatus.INTRANS:
                await _shielded(self.rollback)
            raise

    def _check_active(self) -> None:
        if self.finished:
            raise TransactionClosed(
                "this transaction has already been committed or rolled back; open a new one"
            )


class AsyncPostgresJoinedWriter:
    """The store's appends and reads inside a transaction that its owner opened and ends.

    Made by `AsyncPostgresStore.joined`. The first call creates or migrates
    the schema on the connection if needed. A connection in autocommit with
    no transaction open is refused, since each append would commit at once.
    Database errors are raised as the store raises them (`StoreUnavailable`,
    `EventIdConflict`, ...) and leave ending the transaction to its owner.
    Positions are counted on the server, so several writers, or the owner's
    own appends, may share one transaction.
    """

    def __init__(self, connection: AsyncConnection[Any], store: AsyncPostgresStore) -> None:
        self.connection = connection
        self._store = store
        self._sql = store._sql
        self._schema_ready = False
        self._last_position = 0  # of what this writer appended, announced once committed

    def committed(self) -> None:
        """Announce to subscribers what this writer appended, once the owner has committed.

        Call it after the owner's commit (`SqlAlchemyUnitOfWork` does): the
        store's notifier sends the `NOTIFY`, outside the owner's
        transaction, whose commit would otherwise hold the cluster's
        notification lock through its WAL flush. Uncalled, subscribers find
        the events at their next poll.
        """
        position, self._last_position = self._last_position, 0
        if position:
            self._store._notifier.notify(position)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_batch(0, events)
        check_new_events(stream, events, expected_version)
        await self._prepare()
        with translated():
            result, stored = await _append(
                self.connection, self._sql, stream, events, expected_version, None
            )
            if stored:
                self._last_position = max(self._last_position, result.positions[-1])
        return result

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        check_read_stream(stream, from_version, limit)
        await self._prepare()
        with hooks.reading(SYSTEM, "read_stream", stream) as reading, translated():
            records = await _read_stream(
                self.connection, self._sql, stream, from_version, backwards, limit
            )
            reading.read(len(records))
        return records

    async def lock_stream(self, stream: str) -> None:
        check_stream_name(stream)
        await self._prepare()
        with translated():
            await self.connection.execute(self._sql.lock_stream, (stream,))

    async def _prepare(self) -> None:
        connection = self.connection
        if connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE:
            raise ValueError(
                "the connection is in autocommit with no transaction open: begin one "
                "(`connection.transaction()`) before writing events through it"
            )
        if self._schema_ready or self._store._ready:
            return
        with translated():
            await _migrate(connection, self._sql, self._store.schema)
        self._schema_ready = True


async def _shielded(cleanup: Callable[[], Awaitable[None]]) -> None:
    """Run `cleanup` to its end even while the task is being cancelled."""
    with anyio.CancelScope(shield=True):  # sync: cleanup()
        await cleanup()  # sync:


async def _migrate(
    connection: AsyncConnection[Any], statements: Statements, schema: str
) -> tuple[int, int]:
    """Create the schema or bring it up to `SCHEMA_VERSION`; the versions before and after."""
    # Tuple rows whatever the connection's own row factory: it may be an application's.
    cursor = connection.cursor(row_factory=tuple_row, binary=True)
    await cursor.execute("SELECT to_regclass(%b)", (statements.schema_version_table,))
    exists = await cursor.fetchone()
    if exists is not None and exists[0] is not None:
        await cursor.execute(statements.current_schema_version)
        row = await cursor.fetchone()
        if row is not None and row[0] == SCHEMA_VERSION:
            return SCHEMA_VERSION, SCHEMA_VERSION
    async with connection.transaction():
        await connection.execute(statements.migration_lock, (f"tidings schema {schema}",))
        await connection.execute(statements.create_schema)
        await connection.execute(statements.create_schema_version)
        await cursor.execute(statements.current_schema_version)
        row = await cursor.fetchone()
        current = 0 if row is None or row[0] is None else int(row[0])
        check_schema_version(current)
        steps = migrations(schema)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in steps[version]:
                await connection.execute(statement)
            await connection.execute(statements.record_schema_version, (version,))
    return current, SCHEMA_VERSION


async def _append(
    connection: AsyncConnection[Any],
    statements: Statements,
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    index: int | None,
) -> tuple[AppendResult, int]:
    """Where the batch landed, and how many events this call stored (none when repeated).

    `index` counts the events the transaction appended before; None has the
    server count them, in a transaction that others may append in too.
    """
    cursor = connection.cursor(row_factory=tuple_row, binary=True)
    if index is None:
        params = append_params(stream, events, expected, 0)
        await cursor.execute(statements.append_joined, params[:3] + params[4:])
        (joined_row,) = await cursor.fetchall()
        row, index = joined_row[:-1], int(joined_row[-1])
    else:
        await cursor.execute(statements.append, append_params(stream, events, expected, index))
        (row,) = await cursor.fetchall()
    result = appended(stream, events, expected, index, row)
    if result is not None:
        return result, len(result.positions)
    records = connection.cursor(row_factory=args_row(RecordedEvent), binary=True)
    await records.execute(statements.records_by_id, ([event.event_id for event in events],))
    by_id = {record.event_id: record for record in await records.fetchall()}
    repeated = repeated_append(stream, events, [by_id.get(event.event_id) for event in events])
    assert repeated is not None, "stored events are never removed"
    return repeated, 0


async def _read_stream(
    connection: AsyncConnection[Any],
    statements: Statements,
    stream: str,
    from_version: int | None,
    backwards: bool,
    limit: int | None,
) -> list[RecordedEvent]:
    if backwards:
        query, start = statements.read_backwards, from_version
        if start is None:
            start = 2**63 - 1
    else:
        query, start = statements.read_forwards, from_version or 1
    cursor = connection.cursor(row_factory=args_row(RecordedEvent), binary=True)
    await cursor.execute(query, (stream, start, stream, limit))
    return await cursor.fetchall()
