"""The SQLite event store: the embedded default, one database file, durable by default.

SQLite admits one writer at a time. This store queues its own writing
transactions on a lock (threads or tasks wait there, not in SQLite's busy
loop) and opens each with `BEGIN IMMEDIATE`, so it holds SQLite's write lock
from its first statement and never fails half-way for a writer in another
process. Commits are thus serialised and positions become visible in order:
a reader of `$all` at position P never misses a later commit below P.
Readers use connections of their own and, in WAL mode, never wait for writers.
A read transaction (`read_transaction`) is one of them: a snapshot of the
file that takes no write lock, so looking at projections' checkpoints never
queues behind, or holds up, a writer of any process.

A writer finding the write lock held by another connection retries
`BEGIN IMMEDIATE` itself, every few milliseconds, until `timeout` has passed
since it asked (SQLite's own busy handler would sleep up to 100 ms between
tries, and so miss the short gaps a busy writer leaves). A writer that
catches up a backlog in many transactions (a projection runner) holds the
lock for about `write_turn` seconds each and leaves it free between them,
`write_gap` after a whole turn: long enough for those retries to get in.

Commit listeners hear the commits of other processes too: a thread polls
`PRAGMA data_version` every `watch_interval` seconds while any listener is
registered (see `tidings.store.sqlite_watch`).

The async store calls sqlite3 inline, on the event loop, without a thread
hop. Measured on a 2-core machine with an ext4 disk: a statement takes a few
microseconds, a durable commit (its fsync) about 0.3 ms, and a hop to a
worker thread (`anyio.to_thread.run_sync`) 0.14 ms. Appending one event per
commit, inline made 2,900 events/s against 2,600 with each append in a
thread; ten per commit, 24,000 against 19,400. The price: the loop stalls
for each commit's fsync (p99 about 2 ms there, under load) where a thread
would let other tasks run; `durable=False` shortens that to tens of
microseconds. Tasks of this process waiting to write wait on an anyio lock,
never blocking the loop; a write lock held by another process is waited for
by the retries of `BEGIN IMMEDIATE`, with anyio sleeps between them, so the
loop runs on meanwhile too.

Appends outside an explicit transaction (`store.append`) commit in groups: a
caller queues its append and, if no append is being committed, leads at once
with whatever is queued (alone, for a sequential writer: it never waits for
company). Appends that queue while a group commits wait for it to end; the
first of them then leads the next group, with every append queued by then, in
one transaction and one fsync. Each caller gets its own result and its own
`WrongExpectedVersion` or `EventIdConflict` (the store checks those before
writing anything, so the rest of the group goes on); an error of the database
or of the commit reaches every caller of the group. A caller returns once the
commit holding its events has returned, at the store's durability.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import NoReturn, Self, TypeVar
from uuid import UUID

import anyio  # sync:

from tidings.errors import StoreUnavailable, TidingsError, TransactionClosed
from tidings.observability import hooks
from tidings.observability.hooks import ALL
from tidings.store import sqlite_sql
from tidings.store.checks import (
    check_list_streams,
    check_new_events,
    check_read_all,
    check_read_correlated,
    check_read_stream,
    check_snapshot,
    check_stream,
    check_stream_name,
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
from tidings.store.sqlite_watch import DataVersionWatch

__all__ = ["AsyncSQLiteJoinedWriter", "AsyncSQLiteStore", "AsyncSQLiteTransaction"]

SYSTEM = "sqlite"  # the `db.system` of its read spans

T = TypeVar("T")

# Connections kept open for reads between calls; more are opened while many read at once.
_IDLE_READERS = 4

# A writer kept out by another connection tries again after these pauses, doubling from the
# first to the last: short, so that it gets in between two transactions of a busy writer.
_BUSY_PAUSE_FIRST = 0.0005
_BUSY_PAUSE_LAST = 0.002

_Event = anyio.Event  # sync: _Event = threading.Event


class AsyncSQLiteStore:
    """An event store in one SQLite file, in WAL mode, safe for many threads or tasks.

    `durable=True` (the default) commits with `synchronous=FULL`: a commit
    that returned survives a power loss. `durable=False` is the faster, less
    durable `synchronous=NORMAL`: an application crash loses nothing, but a
    power loss or operating system crash may lose the last commits (the file
    stays consistent). A writer that cannot get the write lock within
    `timeout` seconds gets `StoreUnavailable`. The schema is created, or
    migrated, on first use.

    `watch_interval` is how often commit listeners look for commits of other
    processes (None: they hear this store's commits only).
    """

    write_turn: float | None = 0.05
    """How long a writer catching up a backlog holds the write lock per transaction, at most.

    None: as long as its batches take (a process alone on its file loses nothing to turns).
    """

    write_gap = 0.003
    """How long it leaves the write lock free after a whole turn (in proportion after a shorter
    one): longer than the pause between a waiting writer's tries."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        timeout: float = 5.0,
        watch_interval: float | None = 0.002,
    ) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:"):
            raise ValueError("the SQLite store needs a file; MemoryStore keeps events in memory")
        if watch_interval is not None and watch_interval <= 0:
            raise ValueError(f"watch_interval must be positive or None, got {watch_interval}")
        self.watch_interval = watch_interval
        self.durable = durable
        self._timeout = timeout
        self._write_lock = anyio.Lock()  # sync: self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._migration = (0, 0)  # the schema versions before and after opening the writer
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._commit_listeners: list[Callable[[int], None]] = []
        self._watch: DataVersionWatch | None = None
        self._watch_lock = threading.Lock()
        # Appends waiting for a group commit, and whether one of their callers leads it.
        self._queued: list[_QueuedAppend] = []
        self._leading = False
        self._queue_lock = threading.Lock()  # held for list operations only, never across a wait

    def add_commit_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(last_position)` after each commit that appended events.

        It runs on the committing thread, after the write lock is released, and
        must be quick; subscriptions use it to wake at once. A commit of another
        process or store object to the file calls it too, with position 0, from
        a watching thread within about `watch_interval` seconds (unless that is
        None). Returns a function that removes the listener.
        """
        with self._watch_lock:
            self._commit_listeners.append(listener)
            if self._watch is None and self.watch_interval is not None and not self._closed:
                self._watch = DataVersionWatch(self.path, self.watch_interval, self._heard)
                self._watch.start()
        return lambda: self._remove_listener(listener)

    def _remove_listener(self, listener: Callable[[int], None]) -> None:
        with self._watch_lock:
            self._commit_listeners.remove(listener)
            watch = None
            if not self._commit_listeners:
                watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    def _heard(self) -> None:
        """Some connection committed to the file: tell the listeners, position unknown."""
        for listener in list(self._commit_listeners):
            listener(0)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSQLiteTransaction]:
        deadline = time.monotonic() + self._timeout
        async with self._writing(deadline) as connection:
            await self._begin(connection, deadline)
            tx = AsyncSQLiteTransaction(connection, self.path)
            try:
                yield tx
            except BaseException:
                await tx.rollback()
                raise
            if not tx.finished:
                await tx.commit()
        if tx.last_position:
            for listener in list(self._commit_listeners):
                listener(tx.last_position)

    @asynccontextmanager
    async def read_transaction(self) -> AsyncIterator[AsyncSQLiteTransaction]:
        """A read-only snapshot of the file, on a reading connection: no write lock, no wait.

        Its statements see the database as of its first read, whoever commits
        meanwhile, and may not write (SQLite refuses, as `query_only`). It
        ends when the block does. Looking at side tables (a projection's
        checkpoint) through it never waits for a writer of any process.
        """
        async with self._reader() as connection:
            try:
                connection.execute("BEGIN DEFERRED")
            except sqlite3.Error as exc:
                sqlite_sql.raise_unavailable(self.path, exc)
            tx = AsyncSQLiteTransaction(connection, self.path)
            try:
                yield tx
            finally:
                await tx.rollback()  # nothing was written: ending it is all there is to do

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        """Append in a group commit with the appends of other callers queued meanwhile."""
        check_new_events(stream, events, expected_version)
        self._check_open()
        queued = _QueuedAppend(stream, events, expected_version, time.monotonic() + self._timeout)
        with self._queue_lock:
            self._queued.append(queued)
            if self._leading:  # a follower: told when its group has committed, or to lead
                settled = queued.settled = _Event()
            else:
                queued.leads = self._leading = True
        if not queued.leads:
            try:
                await settled.wait()
            except BaseException:  # cancelled while queued: out of the queue, and of the lead
                with self._queue_lock:
                    if queued in self._queued:
                        self._queued.remove(queued)
                        if queued.leads:
                            self._hand_over()
                raise
        if queued.leads:
            await self._lead(queued)
        if queued.error is not None:
            raise queued.error
        assert queued.result is not None
        return queued.result

    async def _lead(self, own: _QueuedAppend) -> None:
        """Commit every append queued once the write lock and `BEGIN IMMEDIATE` are held.

        Nothing awaits between taking the queue and settling it, so no caller
        of the group is cancelled half-way (async) and none is left waiting.
        """
        group: list[_QueuedAppend] = []
        try:
            async with self._writing(own.deadline) as connection:
                await self._begin(connection, own.deadline)
                with self._queue_lock:
                    group, self._queued = self._queued, []
                _commit_group(connection, group, self.path)
        finally:
            with self._queue_lock:
                if not group:  # failed before taking the queue: the others wait for the next lead
                    self._queued.remove(own)
                self._hand_over()
            last_position = 0
            for queued in group:
                if queued.result is None and queued.error is None:  # interrupted mid-group
                    queued.error = StoreUnavailable(
                        f"SQLite database {self.path!r}: the group commit was interrupted"
                    )
                if queued.result is not None and queued.result.positions:
                    last_position = max(last_position, queued.result.positions[-1])
                if queued.settled is not None:  # every caller of the group but the leader
                    queued.settled.set()
        if last_position:
            for listener in list(self._commit_listeners):
                listener(last_position)

    def _hand_over(self) -> None:
        """Make the oldest queued append's caller lead the next group (queue lock held)."""
        if self._queued:
            follower = self._queued[0]
            follower.leads = True
            assert follower.settled is not None  # every caller queued behind a leader has one
            follower.settled.set()
        else:
            self._leading = False

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
            records = await self._read(
                lambda connection: sqlite_sql.read_stream(
                    connection, stream, from_version, backwards, limit
                )
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
        with hooks.reading(SYSTEM, "read_all", ALL) as reading:
            records = await self._read(
                lambda connection: sqlite_sql.read_all(connection, after, limit, categories, types)
            )
            reading.read(len(records))
        return records

    async def read_correlated(
        self, correlation_id: UUID, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        check_read_correlated(correlation_id, limit)
        return await self._read(
            lambda connection: sqlite_sql.read_correlated(connection, correlation_id, limit)
        )

    async def head_position(self) -> int:
        return await self._read(sqlite_sql.head_position)

    async def watermark(self) -> Watermark:
        """Commits are serialised and visible in order: readers are never held back."""
        head = await self.head_position()
        return Watermark(head, head, 0, 0.0)

    async def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        return await self._read(lambda connection: sqlite_sql.stream_version(connection, stream))

    async def list_streams(
        self,
        category: str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
        include_deleted: bool = False,
    ) -> list[StreamInfo]:
        check_list_streams(category, after, limit)
        return await self._read(
            lambda connection: sqlite_sql.list_streams(
                connection, category, after, limit, include_deleted
            )
        )

    async def delete_stream(
        self, stream: str, expected_version: ExpectedVersion = StreamState.ANY
    ) -> None:
        check_stream(stream, expected_version)
        async with self.transaction() as tx:
            await tx._run(
                lambda connection: sqlite_sql.delete_stream(connection, stream, expected_version)
            )

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        check_snapshot(snapshot)
        async with self.transaction() as tx:
            return await tx._run(lambda connection: sqlite_sql.save_snapshot(connection, snapshot))

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_name(stream)
        return await self._read(lambda connection: sqlite_sql.read_snapshot(connection, stream))

    async def migrate(self) -> tuple[int, int]:
        """Create or migrate the schema now rather than at first use.

        Returns the schema versions before and after this store first opened
        the database for writing (0: there was no schema).
        """
        async with self._writing(time.monotonic() + self._timeout):
            return self._migration

    def joined(self, connection: sqlite3.Connection) -> AsyncSQLiteJoinedWriter:
        """Appends and reads in the transaction someone else holds open on `connection`.

        `connection` is a `sqlite3.Connection` on this store's file, owned by,
        say, an ORM session: the events appended through the returned writer
        commit or roll back with that owner's transaction, at its durability
        setting. Use one writer per transaction.
        """
        self._check_open()
        target = sqlite_sql.database_file(connection)
        if not target or os.path.realpath(target) != os.path.realpath(self.path):
            raise ValueError(
                f"the connection is on {target or 'an in-memory database'!r}, "
                f"not on this store's file {self.path!r}"
            )
        return AsyncSQLiteJoinedWriter(connection, self.path, self._commit_listeners)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections, once a transaction in progress has ended."""
        self._closed = True
        with self._watch_lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        async with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        while self._readers:
            self._readers.pop().close()

    @asynccontextmanager
    async def _writing(self, deadline: float) -> AsyncIterator[sqlite3.Connection]:
        """The writing connection, to this store's writers alone until the block ends."""
        self._check_open()
        await self._lock_writer(deadline)
        try:
            yield await self._open_writer()
        finally:
            self._write_lock.release()

    async def _lock_writer(self, deadline: float) -> None:
        timeout = max(0.0, deadline - time.monotonic())
        with anyio.move_on_after(timeout):  # sync: if self._write_lock.acquire(timeout=timeout):
            await self._write_lock.acquire()  # sync: return
            return  # sync:
        raise StoreUnavailable(
            f"SQLite database {self.path!r}: another writer held it for {self._timeout} s"
        )

    async def _begin(self, connection: sqlite3.Connection, deadline: float) -> None:
        """`BEGIN IMMEDIATE`, tried again while another connection holds the write lock.

        The pauses between tries are short (see `_BUSY_PAUSE_LAST`) and end at
        `deadline`, the caller's `timeout` after it asked for the transaction;
        then the database is unavailable.
        """
        pause = _BUSY_PAUSE_FIRST
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not sqlite_sql.is_busy(exc):
                    sqlite_sql.raise_unavailable(self.path, exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(
                        f"SQLite database {self.path!r}: {exc}: another connection held"
                        f" the write lock for {self._timeout} s"
                    ) from exc
            except sqlite3.Error as exc:
                sqlite_sql.raise_unavailable(self.path, exc)
            await anyio.sleep(min(pause, remaining))  # sync: time.sleep(min(pause, remaining))
            pause = min(pause * 2, _BUSY_PAUSE_LAST)

    async def _open_writer(self) -> sqlite3.Connection:
        """The writing connection; opening it switches the file to WAL and makes the schema.

        Both need locks SQLite's busy handler does not always wait for: a
        connection that reads a file in rollback-journal mode while another
        holds its write lock is refused at once (waiting could deadlock), and
        so are some steps of a new file's switch to WAL. The store retries the
        whole step itself, from a clean slate, until `timeout` has passed.
        """
        self._check_open()
        if self._writer is None:
            connection = self._connect()
            deadline = time.monotonic() + self._timeout
            pause = 0.001
            try:
                while True:
                    try:
                        sqlite_sql.use_wal(connection)
                        self._migration = sqlite_sql.migrate(connection)
                        break
                    except sqlite3.OperationalError as exc:
                        if not sqlite_sql.is_busy(exc) or time.monotonic() + pause > deadline:
                            raise
                    await anyio.sleep(pause)  # sync: time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            except sqlite3.Error as exc:
                connection.close()
                sqlite_sql.raise_unavailable(self.path, exc)
            except BaseException:
                connection.close()
                raise
            # `_begin` waits for the write lock itself; once held, nothing else waits for it.
            connection.execute("PRAGMA busy_timeout = 0")
            self._writer = connection
        return self._writer

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        async with self._reader() as connection:
            try:
                return query(connection)
            except sqlite3.Error as exc:
                sqlite_sql.raise_unavailable(self.path, exc)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[sqlite3.Connection]:
        """A reading connection of the pool, to the block alone; the schema is made first.

        Reading connections are `query_only`: SQLite refuses any write on them.
        """
        self._check_open()
        if self._writer is None:
            async with self._writing(time.monotonic() + self._timeout):
                pass  # opening the writer has made the schema
        try:
            connection = self._readers.pop()
        except IndexError:
            connection = self._connect()
            try:
                connection.execute("PRAGMA query_only = 1")
            except sqlite3.Error as exc:
                connection.close()
                sqlite_sql.raise_unavailable(self.path, exc)
        try:
            yield connection
        finally:
            if self._closed or len(self._readers) >= _IDLE_READERS:
                connection.close()
            else:
                self._readers.append(connection)

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            if self.durable:
                connection.execute("PRAGMA synchronous = FULL")
            else:
                connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            sqlite_sql.raise_unavailable(self.path, exc)
        return connection

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"SQLite database {self.path!r}: the store is closed")


class _QueuedAppend:
    """One caller's append, waiting for the group commit that takes it, then its outcome."""

    __slots__ = (
        "deadline",
        "error",
        "events",
        "expected",
        "leads",
        "result",
        "settled",
        "stream",
    )

    def __init__(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion, deadline: float
    ) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        self.deadline = deadline  # for the write lock, should this caller lead
        self.leads = False  # set when the caller is to lead a group rather than wait for one
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        self.settled: _Event | None = None


def _commit_group(connection: sqlite3.Connection, group: list[_QueuedAppend], path: str) -> None:
    """Append every queued append in the open transaction, commit, and settle their outcomes.

    An append's own `WrongExpectedVersion` or `EventIdConflict` is raised
    before it writes anything (`sqlite_sql.append`), so it is that caller's
    alone; a database error, or a failed commit, rolls back the group and is
    every caller's. Results are given only once the commit has returned.
    """
    outcomes: list[AppendResult | TidingsError] = []
    try:
        for queued in group:
            try:
                outcomes.append(
                    sqlite_sql.append(connection, queued.stream, queued.events, queued.expected)
                )
            except TidingsError as exc:
                outcomes.append(exc)
        connection.execute("COMMIT")
    except BaseException as exc:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite has already rolled back what it could not keep
        if not isinstance(exc, sqlite3.Error):
            raise  # the leader's to raise; the others are told the group was interrupted
        try:
            sqlite_sql.raise_unavailable(path, exc)
        except Exception as typed:  # the store's error for it, for every caller of the group
            for queued in group:
                queued.error = typed
        return
    for queued, outcome in zip(group, outcomes, strict=True):
        if isinstance(outcome, AppendResult):
            queued.result = outcome
        else:
            queued.error = outcome


class AsyncSQLiteTransaction:
    """A writing transaction (`BEGIN IMMEDIATE`) on the store's connection.

    `connection` is that `sqlite3.Connection`: the application's own
    statements on it commit or roll back together with the appended events.
    Leave `COMMIT` and `ROLLBACK` to this object. A database error in its
    own statements rolls the whole transaction back: a locked or failing
    database raises `StoreUnavailable`, a statement SQLite cannot run its error.
    """

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.connection = connection
        self.finished = False
        self._path = path
        self.last_position = 0  # of the last event appended: what commit listeners are told

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_new_events(stream, events, expected_version)
        result = await self._run(
            lambda connection: sqlite_sql.append(connection, stream, events, expected_version)
        )
        if result.positions:
            self.last_position = max(self.last_position, result.positions[-1])
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
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            records = await self._run(
                lambda connection: sqlite_sql.read_stream(
                    connection, stream, from_version, backwards, limit
                )
            )
            reading.read(len(records))
        return records

    async def lock_stream(self, stream: str) -> None:
        """Nothing more to take: `BEGIN IMMEDIATE` holds the database's write lock already."""
        check_stream_name(stream)
        self._check_active()

    async def commit(self) -> None:
        await self._run(lambda connection: connection.execute("COMMIT"))
        self.finished = True

    async def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        # `_run`, inline: a read model's catch-up runs this for every statement.
        self._check_active()
        try:
            self.connection.execute(statement, params)
        except sqlite3.Error as exc:
            self._failed(exc)

    async def query(
        self, statement: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        rows = await self._run(lambda connection: connection.execute(statement, params).fetchall())
        return [tuple(row) for row in rows]

    @asynccontextmanager
    async def batched(self) -> AsyncIterator[None]:
        """Nothing to batch: statements run in this process, with no round trip to save."""
        yield

    async def rollback(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.last_position = 0  # nothing to announce
        try:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            sqlite_sql.raise_unavailable(self._path, exc)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the connection; a database error rolls everything back."""
        self._check_active()
        try:
            return work(self.connection)
        except sqlite3.Error as exc:
            self._failed(exc)

    def _check_active(self) -> None:
        if self.finished:
            raise TransactionClosed(
                "this transaction has already been committed or rolled back; open a new one"
            )

    def _failed(self, exc: sqlite3.Error) -> NoReturn:
        """Roll everything back after `exc`, and raise it as the store does."""
        self.finished = True
        try:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite has already rolled back what it could not keep
        sqlite_sql.raise_unavailable(self._path, exc)


class AsyncSQLiteJoinedWriter:
    """The store's appends and reads inside a transaction that its owner opened and ends.

    Made by `AsyncSQLiteStore.joined`. Each call first migrates the schema
    within the owner's transaction if needed and takes SQLite's write lock, so
    versions and positions are read under it; a writer in another connection
    holding the lock longer than the connection's timeout makes the call
    raise `StoreUnavailable`. Errors leave the owner's transaction open: the
    owner commits or rolls it back, and calls `committed()` after a commit so
    the store's subscribers in this process wake at once.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: str,
        commit_listeners: list[Callable[[int], None]],
    ) -> None:
        self.connection = connection
        self._path = path
        self._commit_listeners = commit_listeners
        self._last_position = 0
        self._joined = False  # the owner's transaction is ready: schema current, write lock held

    def committed(self) -> None:
        """Tell the store's commit listeners that the owner committed what this writer appended."""
        position, self._last_position = self._last_position, 0
        if position:
            for listener in list(self._commit_listeners):
                listener(position)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        check_new_events(stream, events, expected_version)
        result = self._run(
            lambda connection: sqlite_sql.append(connection, stream, events, expected_version)
        )
        if result.positions:
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
        with hooks.reading(SYSTEM, "read_stream", stream) as reading:
            records = self._run(
                lambda connection: sqlite_sql.read_stream(
                    connection, stream, from_version, backwards, limit
                )
            )
            reading.read(len(records))
        return records

    async def lock_stream(self, stream: str) -> None:
        """Take the database's write lock for the owner's transaction, as every call does."""
        check_stream_name(stream)
        self._run(lambda connection: None)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            # Readying the transaction reads the schema version: once per transaction is enough.
            if not (self._joined and self.connection.in_transaction):
                sqlite_sql.join(self.connection)
                self._joined = True
            return work(self.connection)
        except sqlite3.Error as exc:
            sqlite_sql.raise_unavailable(self._path, exc)
