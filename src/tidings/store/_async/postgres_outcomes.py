"""What became of a PostgreSQL write whose connection was lost while it committed.

A client that loses its connection after sending `COMMIT` cannot tell from
the error whether the server committed: the server may have written the
commit and been stopped (`pg_terminate_backend`, a restart, a network cut)
before its answer arrived. Reporting "nothing kept" then is wrong about one
time in ten under such terminations, and a caller that retries with new
event ids stores its events twice.

The store therefore resolves each lost commit before it reports, in one of
two ways, on a fresh connection:

- a transaction, which may hold the application's own writes, by its id
  (read before `COMMIT`): `pg_xact_status` says committed or aborted; while
  it says in progress, the transaction's backend is still there, its client
  gone, and is ended (matched by process id and transaction id, so no other
  session is touched), which rolls it back unless it had committed;
- a plain append, or a snapshot, which hold nothing else, by running it
  again in a READ COMMITTED transaction: an append stores a batch whose
  event ids are already stored nothing more and returns where it landed, and
  its stream's lock makes the second run wait for a first one still running.

Either answers for certain once the server can be reached; until the
store's `timeout` has passed, it keeps trying. Then, and only then,
`CommitOutcomeUnknown` is raised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio  # sync:
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tidings.errors import CommitOutcomeUnknown, StoreUnavailable
from tidings.store.postgres_sql import Statements, converted

__all__ = ["AsyncCommitOutcomes", "lost"]

T = TypeVar("T")

_Connection = AsyncConnection[TupleRow]


def lost(connection: AsyncConnection[object]) -> bool:
    """Whether `connection` is gone: a statement sent on it may or may not have run."""
    return connection.broken or connection.closed


class AsyncCommitOutcomes:
    """Resolves lost commits on fresh connections, for up to `timeout` seconds.

    A transaction's outcome is read on a connection of its own to `conninfo`,
    not one of `pool`: the transaction still holds its pooled connection,
    and the pool may have no other to give. A write run again takes one of
    `pool` once the lost one is back.
    """

    def __init__(
        self,
        conninfo: str,
        pool: AsyncConnectionPool[_Connection],
        statements: Statements,
        timeout: float,
    ) -> None:
        self._conninfo = conninfo
        self._pool = pool
        self._sql = statements
        self._timeout = timeout

    async def committed(self, transaction_id: int, backend_pid: int | None) -> bool:
        """Whether transaction `transaction_id` (a `pg_current_xact_id()`) committed.

        `backend_pid` is the process that ran it; while the transaction is in
        progress, that process is ended if it still runs it. Raises
        `CommitOutcomeUnknown` when the server cannot say within `timeout`.
        """
        deadline = time.monotonic() + self._timeout
        pause = 0.005
        reason = "the server could not be reached"
        while True:
            try:
                async with await AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=max(2, int(_left(deadline)))
                ) as connection:
                    cursor = await connection.execute(self._sql.xact_status, (transaction_id,))
                    row = await cursor.fetchone()
                    status = None if row is None else row[0]
                    if status == "committed":
                        return True
                    if status == "aborted":
                        return False
                    if status is None:
                        raise CommitOutcomeUnknown(
                            f"transaction {transaction_id}: PostgreSQL no longer knows its outcome"
                        )
                    reason = "it was still in progress"
                    if backend_pid is not None:
                        await _end(connection, self._sql, backend_pid, transaction_id)
            except psycopg.OperationalError as exc:
                reason = f"the server could not be reached ({exc})"
            if time.monotonic() + pause > deadline:
                raise CommitOutcomeUnknown(
                    f"the connection was lost while transaction {transaction_id} committed, "
                    f"and within {self._timeout} s {reason}: it was kept entirely or not at "
                    "all; retrying with the same event ids is safe"
                )
            await anyio.sleep(pause)  # sync: time.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def again(self, work: Callable[[_Connection], Awaitable[T]], *, lost_once: bool) -> T:
        """Run the idempotent `work` in a READ COMMITTED transaction until one answers.

        `work` runs its statements on the connection it is given, inside the
        transaction; its result is returned once the transaction commits.
        Database errors are raised as tidings errors. `lost_once` tells
        whether an earlier run may have been kept: then a run that cannot
        be made within `timeout` raises `CommitOutcomeUnknown` rather than
        `StoreUnavailable`.
        """
        deadline = time.monotonic() + self._timeout
        pause = 0.005
        while True:
            connection: _Connection | None = None
            try:
                async with self._pool.connection(timeout=_left(deadline)) as connection:
                    await connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    # Bounded: a first run still holding its stream's lock is waited for.
                    await connection.execute(
                        self._sql.set_lock_timeout, (str(int(_left(deadline) * 1000) + 1),)
                    )
                    result = await work(connection)
                    await connection.execute("COMMIT")
                    return result
            except PoolTimeout as exc:
                failure: BaseException = exc
            except psycopg.Error as exc:
                if connection is None or not lost(connection):
                    raise (converted(exc) or exc) from exc
                failure, lost_once = exc, True
            if time.monotonic() + pause > deadline:
                message = (
                    f"PostgreSQL: the write could not be made within {self._timeout} s: {failure}"
                )
                if lost_once:
                    raise CommitOutcomeUnknown(
                        f"{message}; an earlier attempt lost its connection while it committed,"
                        " so it was kept entirely or not at all: retrying with the same event"
                        " ids is safe"
                    ) from failure
                raise StoreUnavailable(message) from failure
            await anyio.sleep(pause)  # sync: time.sleep(pause)
            pause = min(pause * 2, 0.2)


async def _end(connection: _Connection, statements: Statements, pid: int, xid: int) -> None:
    """End the process `pid` if it still runs transaction `xid`, so that it rolls back."""
    # Not ours to end (another role's): then wait for the server to notice the lost client.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        await connection.execute(statements.end_transaction, (pid, xid))


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)
