"""Statements of a batch streamed to PostgreSQL in one pipeline, each distinct text prepared once.

psycopg's pipeline mode saves the round trips but still spends tens of
microseconds of Python per statement (a cursor, a query conversion, its
prepared-statement bookkeeping, a wait). A batch of a projection's writes is
a few statement texts run many times, so here each distinct text (with its
parameters' types) is prepared once per batch and each statement costs only
its parameters, dumped and put in libpq's output buffer: the connection does
not block, so the server runs the statements, in order, while the caller
goes on handling events. `finish` sends the sync and reads the results up to
it: one wait for the whole batch. The first failure is raised then, as
psycopg raises it; the server skips the statements after it, and the
transaction is left aborted, as a failing statement leaves it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

from psycopg import BaseConnection, errors, pq
from psycopg.abc import PQGen
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq.abc import PGresult
from psycopg.waiting import Ready, Wait

from tidings.errors import TidingsError
from tidings.store.placeholders import qmark_to_numbered

__all__ = ["BatchOvertaken", "StatementPipeline"]


class BatchOvertaken(TidingsError):
    """The driver's connection was used while batched statements were still in flight."""


_names = itertools.count(1)  # prepared statements' names, unique in the process
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_FAILED = pq.ExecStatus.FATAL_ERROR
_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_CLOSES = pq.version() >= 170000  # libpq 17 closes a prepared statement in a pipeline
_POLL_EVERY = 256  # statements sent between two looks at the results come back


class StatementPipeline:
    """Statements sent on `connection` in libpq's pipeline mode until `finish`.

    `connection` is a psycopg connection (blocking or async) in a transaction,
    not in pipeline mode; nothing else may use it until `finish` (or
    `abandon`) has been waited for with `connection.wait`.
    """

    def __init__(self, connection: BaseConnection[Any]) -> None:
        self._pgconn = pgconn = connection.pgconn
        self._encoding = connection.info.encoding
        self._transformer = Transformer(connection)
        self._texts: dict[str, tuple[bytes, int, list[PyFormat]]] = {}
        self._names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._sent = 0  # commands sent (prepares and closes too), in order
        self._done = 0  # commands whose results have all been read
        self._unpolled = 0
        self._failed: PGresult | None = None
        self._kept: dict[int, PGresult | None] = {}  # a command's number: its result, once read
        pgconn.enter_pipeline_mode()

    def send(self, statement: str, params: Sequence[object], *, keep: bool = False) -> int:
        """Queue `statement` (`?` placeholders) with `params`; its number, for `result`.

        The first statement is sent at once, so that the server starts on
        the batch while the caller queues the rest. With `keep`, its
        result is kept for `result` once the pipeline is finished.
        """
        converted = self._texts.get(statement)
        if converted is None:
            text, count = qmark_to_numbered(statement)
            converted = (text.encode(self._encoding), count, [PyFormat.AUTO] * count)
            self._texts[statement] = converted
        query, count, wanted = converted
        if count != len(params):
            raise errors.ProgrammingError(
                f"the query has {count} placeholders but {len(params)} parameters were passed"
            )
        pgconn = self._pgconn
        if count:
            transformer = self._transformer
            values = transformer.dump_sequence(params, wanted)
            types = transformer.types or ()
            formats = transformer.formats
        else:
            values, types, formats = None, (), None
        name = self._names.get((query, types))
        if name is None:
            name = self._names[query, types] = f"_tidings_batch_{next(_names)}".encode()
            pgconn.send_prepare(name, query, param_types=types)
            self._sent += 1
        pgconn.send_query_prepared(name, values, param_formats=formats)
        number = self._sent
        self._sent = number + 1
        if keep:
            self._kept[number] = None
        unpolled = self._unpolled
        if unpolled and unpolled < _POLL_EVERY:
            self._unpolled = unpolled + 1
            return number
        self._unpolled = 1
        pgconn.flush()
        if unpolled:
            pgconn.consume_input()
            self._read_ready()
        return number

    def result(self, number: int) -> PGresult | None:
        """The result of statement `number` sent with `keep`, once finished (None if skipped)."""
        return self._kept.get(number)

    def finish(self) -> PQGen[None]:
        """For `connection.wait`: end the pipeline; raise the first statement's failure."""
        failed = yield from self._end()
        if failed is not None:
            raise errors.error_from_result(failed, encoding=self._encoding)

    def abandon(self) -> PQGen[None]:
        """For `connection.wait`: end the pipeline, whatever its statements did."""
        with contextlib.suppress(errors.Error):
            yield from self._end()

    def _end(self) -> PQGen[PGresult | None]:
        pgconn = self._pgconn
        try:
            for name in self._names.values():
                if _CLOSES:
                    pgconn.send_close_prepared(name)
                else:
                    pgconn.send_query(b"DEALLOCATE " + name)
                self._sent += 1
            pgconn.pipeline_sync()
            while True:
                ready = yield (Wait.R if pgconn.flush() == 0 else Wait.RW)
                if not ready & Ready.R:
                    continue
                pgconn.consume_input()
                if self._read_ready():
                    break
        except BaseException:
            with contextlib.suppress(errors.OperationalError):  # results left: connection lost
                pgconn.exit_pipeline_mode()
            raise
        pgconn.exit_pipeline_mode()
        return self._failed

    def _read_ready(self) -> bool:
        """Read the results come back so far; whether the sync has come back too."""
        pgconn = self._pgconn
        kept = self._kept
        while not pgconn.is_busy():
            if self._done == self._sent:
                result = pgconn.get_result()  # the sync's, if it is there
                if result is None:
                    return False
                return result.status == _SYNC
            result = pgconn.get_result()
            if result is None:
                self._done += 1  # the end of one command's results
            elif result.status == _FAILED:
                if self._failed is None:
                    self._failed = result
            elif kept and self._done in kept and result.status != _ABORTED:
                kept[self._done] = result
        return False
