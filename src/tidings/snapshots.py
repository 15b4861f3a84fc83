"""Snapshots of event-sourced aggregates: their state at a version, so loading skips the replay.

An aggregate opts in with `snapshot_every = N`. Its state is the set of
attributes annotated on its class (and its bases); a snapshot stores them with
msgspec together with a *shape*, a digest of the field names and types. When
the class changes shape, old snapshots no longer match and the aggregate is
replayed in full from its events, so a snapshot can never resurrect a stale
layout. The unit of work takes a snapshot when a commit carries an aggregate's
version across a multiple of N, and the event-sourced repository loads from
the latest one.
"""

from __future__ import annotations

import hashlib
import typing
from typing import Any, ClassVar

import msgspec

from tidings.domain import EventSourced
from tidings.store.records import Snapshot

__all__ = ["SnapshotCodec", "snapshot_codec"]


class SnapshotCodec:
    """Encodes and restores the annotated state of one event-sourced aggregate class."""

    def __init__(self, aggregate_type: type[EventSourced]) -> None:
        every = aggregate_type.snapshot_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise TypeError(
                f"{aggregate_type.__name__}.snapshot_every must be a positive number of events, "
                f"got {every!r}"
            )
        self.every = every
        fields = _state_fields(aggregate_type)
        if not fields:
            raise TypeError(
                f"{aggregate_type.__name__} sets snapshot_every but annotates no state fields "
                "on its class; annotate them (e.g. `status: str`) so snapshots know its state"
            )
        self._names = tuple(fields)
        self._struct = msgspec.defstruct(f"{aggregate_type.__name__}State", list(fields.items()))
        self._decoder = msgspec.json.Decoder(self._struct)
        spec = ";".join(f"{name}:{tp!r}" for name, tp in fields.items())
        self.shape = hashlib.sha256(spec.encode()).hexdigest()[:16]

    def due(self, before: int, after: int) -> bool:
        """Whether a commit from version `before` to `after` passes a multiple of `every`."""
        return after // self.every > before // self.every

    def take(self, aggregate: EventSourced) -> Snapshot:
        """The aggregate's state now, as of its version."""
        state = self._struct(**{name: getattr(aggregate, name) for name in self._names})
        return Snapshot(aggregate.stream, aggregate.version, self.shape, msgspec.json.encode(state))

    def restore(self, aggregate: EventSourced, snapshot: Snapshot) -> bool:
        """Load `snapshot` into `aggregate`; False when its shape or data no longer fit."""
        if snapshot.shape != self.shape:
            return False
        try:
            state = self._decoder.decode(snapshot.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        for name in self._names:
            setattr(aggregate, name, getattr(state, name))
        aggregate.version = snapshot.version
        return True


_codecs: dict[type[EventSourced], SnapshotCodec | None] = {}


def snapshot_codec(aggregate_type: type[EventSourced]) -> SnapshotCodec | None:
    """The snapshot codec of a class that sets `snapshot_every`, else None; made once per class."""
    try:
        return _codecs[aggregate_type]
    except KeyError:
        codec = None if aggregate_type.snapshot_every is None else SnapshotCodec(aggregate_type)
        _codecs[aggregate_type] = codec
        return codec


def _state_fields(aggregate_type: type[EventSourced]) -> dict[str, Any]:
    hints = typing.get_type_hints(aggregate_type)
    framework = set(typing.get_type_hints(EventSourced))
    return {
        name: tp
        for name, tp in hints.items()
        if name not in framework and typing.get_origin(tp) is not ClassVar and tp is not ClassVar
    }
