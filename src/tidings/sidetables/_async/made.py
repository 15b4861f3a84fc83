"""A side table made on first use, and known to exist only once that has committed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from tidings.store._async.base import AsyncStoreWriter, AsyncTransactional

__all__ = ["AsyncSideTable"]


class AsyncSideTable:
    """Runs calls on a side table of `store`, making it (with `create`) until that has committed.

    The table is made in the transaction of the first calls, so a call given
    the caller's transaction commits or rolls back with it. A rollback takes
    the `CREATE TABLE` with it: so the table counts as made only once a
    transaction of this object's own has committed, never on the word of a
    transaction that may still roll back. Until then each call makes it again
    (`CREATE ... IF NOT EXISTS`, cheap).
    """

    def __init__(
        self, store: AsyncTransactional, create: Callable[[AsyncStoreWriter], Awaitable[None]]
    ) -> None:
        self.store = store
        self._create = create
        self._made = False

    @asynccontextmanager
    async def transaction(
        self, tx: AsyncStoreWriter | None = None
    ) -> AsyncIterator[AsyncStoreWriter]:
        """`tx`, or a new store transaction, with the table made in it if need be."""
        if tx is not None:
            if not self._made:
                await self._create(tx)
            yield tx
            return
        async with self.store.transaction() as own:
            if not self._made:
                await self._create(own)
            yield own
        self._made = True
