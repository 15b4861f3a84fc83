"""Inline projections: read models written in the transaction of the events they read.

A unit of work given `inline=[projection]` applies, before it commits, each
event it appended to every inline projection that handles it, with the
event's envelope (stream, version and log position set), in the store
transaction that carries the events. One commit keeps both or neither.

The projection is the one a runner runs (`Projection`, `@handles`), and it
keeps its row in the projections table: an inline commit moves the
checkpoint up to the last position it applied, so a runner's `rebuild` of
it starts from the same rules, and the row's lock orders inline commits
with the runner's pause and rebuild. While the projection is not running
(rebuilding, paused, parked), a commit it would apply to is refused with
`ProjectionStopped`: applying it would count an event twice or drop it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from tidings.errors import ConfigurationError
from tidings.messages import Envelope, Event
from tidings.projections._async.base import AsyncRunnerBase, call, called
from tidings.projections._async.checkpoints import checkpoints_of
from tidings.projections.projection import (
    EventHandler,
    InlineProjectionFailed,
    Projection,
    ProjectionState,
    ProjectionStopped,
)
from tidings.store._async.base import (
    AsyncReadModelStore,
    AsyncReadModelTransaction,
    AsyncStoreTransaction,
)
from tidings.store.records import category_of

__all__ = ["AsyncInlineProjections"]

# The projections set up per store, so that a unit of work made per call sets up once.
_prepared: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()


class AsyncInlineProjections:
    """The inline projections of a unit of work over `store`.

    Only `transactional` projections qualify: their read model must commit
    with the events, in the store's database.
    """

    def __init__(
        self,
        store: AsyncReadModelStore,
        projections: Iterable[Projection[AsyncReadModelTransaction]],
    ) -> None:
        self.store = store
        self.projections: dict[str, Projection[AsyncReadModelTransaction]] = {}
        for projection in projections:
            AsyncRunnerBase._check(projection)
            if not projection.transactional:
                raise ConfigurationError(
                    f"projection {projection.name!r} is not transactional: an inline "
                    "projection's read model commits with the events, in the store's database"
                )
            if projection.name in self.projections:
                raise ConfigurationError(f"two projections are named {projection.name!r}")
            self.projections[projection.name] = projection
        self._handlers = {
            name: dict(projection.handlers()) for name, projection in self.projections.items()
        }
        self.checkpoints = checkpoints_of(store)

    async def prepare(self) -> None:
        """Create the projections table, and each projection's row and read model (`setup`).

        Once per store and projection name in a process; in a transaction of
        its own, before the first block that could apply events.
        """
        done = _prepared.setdefault(self.store, set())
        missing = [p for name, p in self.projections.items() if name not in done]
        if not missing:
            return
        async with self.store.transaction() as tx:
            await self.checkpoints.ensure(tx)
            for projection in missing:
                await self.checkpoints.add(tx, projection.name, inline=True)
                await call(projection.setup, tx)
        done.update(projection.name for projection in missing)

    async def apply(self, tx: AsyncStoreTransaction, envelopes: Sequence[Envelope[Event]]) -> None:
        """Apply the stored `envelopes` to every projection that handles them, in `tx`.

        Raises `ProjectionStopped` for a projection that is not running, and
        `InlineProjectionFailed` for a handler that fails; either way `tx`
        must be rolled back.
        """
        for name, projection in self.projections.items():
            due = [
                (envelope, handler)
                for envelope in envelopes
                if (handler := self._handler(name, projection, envelope)) is not None
            ]
            if not due:
                continue
            last = max(_position(envelope) for envelope, _ in due)
            # The row first, as the runner does: a rebuild holding it is waited for, and
            # the read model's rows are locked after it in every transaction.
            found = await self.checkpoints.advance(tx, name, last)
            if found is None:
                raise ConfigurationError(
                    f"projection {name!r} has no row in the projections table: it was "
                    "deleted after this process set it up"
                )
            state, error = found
            if state != ProjectionState.RUNNING:
                raise ProjectionStopped(name, ProjectionState(state), error)
            for envelope, handler in due:
                try:
                    await called(handler, envelope, tx)
                except Exception as exc:
                    event_type = type(envelope.message).__event_type__
                    raise InlineProjectionFailed(
                        name, event_type, _position(envelope), exc
                    ) from exc

    def _handler(
        self,
        name: str,
        projection: Projection[AsyncReadModelTransaction],
        envelope: Envelope[Event],
    ) -> EventHandler[AsyncReadModelTransaction] | None:
        categories = projection.categories
        if categories is not None and category_of(envelope.stream or "") not in categories:
            return None
        handlers = self._handlers[name]
        found = handlers.get(type(envelope.message).__event_type__)
        return found if found is not None else handlers.get(Event.__event_type__)


def _position(envelope: Envelope[Event]) -> int:
    assert envelope.position is not None, "an inline projection is given stored events"
    return envelope.position
