"""Partitions: a projection split by a stable hash of each event's key, run by many workers.

A projection with `partitions = P` (P > 1) has P checkpoints, one per
partition, in rows named `<name>#<index>`. Every event goes to the partition
`partition_of(projection.partition_key(record), P)` (the stream's name by
default), so all events of one stream are handled by one partition, in stream
order, while the partitions run apart: in one runner or in runners of many
processes, each partition held by one runner at a time under a fenced lease.

P is recorded in the rows. A runner started with another P than recorded
refuses to start (`PartitionsChanged`): moving every stream to other
partitions needs the read model rebuilt (`rebuild`), never a silent reshuffle.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

from tidings.errors import TidingsError

__all__ = [
    "Lease",
    "LeaseLost",
    "Partition",
    "PartitionsChanged",
    "current_lease",
    "partition_of",
]

SEPARATOR = "#"
"""Between a projection's name and a partition's index in the partition's row name."""


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key` among `partitions`: the same in every process and version."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition `index` of `count` of projection `projection`; one checkpoint row."""

    projection: str
    index: int
    count: int

    @property
    def key(self) -> str:
        """The name of its row: the projection's own name when it is not split."""
        if self.count == 1:
            return self.projection
        return f"{self.projection}{SEPARATOR}{self.index}"

    def holds(self, key: str) -> bool:
        """Whether the events of partition key `key` (a stream, by default) are this one's."""
        return self.count == 1 or partition_of(key, self.count) == self.index


def partitions(name: str, count: int) -> list[Partition]:
    """Every partition of projection `name` split `count` ways."""
    return [Partition(name, index, count) for index in range(count)]


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease under which a runner handles a partition's events now (see `current_lease`).

    `token` is the fencing token, raised on every takeover: the checkpoint
    write of a batch succeeds only while the row still holds it.
    """

    projection: str
    partition: int
    partitions: int
    owner: str
    token: int


current: ContextVar[Lease | None] = ContextVar("tidings_projection_lease", default=None)


def current_lease() -> Lease | None:
    """The lease of the partition whose events the calling handler is handling, if any."""
    return current.get()


class PartitionsChanged(TidingsError, ValueError):
    """A projection was started with another partition count than its checkpoints record.

    Changing it moves streams to other partitions: rebuild the projection
    (`rebuild`, `tidings projections rebuild`), which records the new count.
    """

    def __init__(self, projection: str, recorded: int, configured: int) -> None:
        self.projection = projection
        self.recorded = recorded
        self.configured = configured
        super().__init__(
            f"projection {projection!r} is recorded with {recorded} partition(s) but "
            f"configured with {configured}: rebuild it to change the count"
        )


class LeaseLost(TidingsError):
    """A runner's lease of a partition was taken over: its checkpoint write was refused.

    The batch it was writing rolled back; the runner drops the partition.
    """

    def __init__(self, key: str, owner: str, token: int) -> None:
        self.key = key
        self.owner = owner
        self.token = token
        super().__init__(f"{owner} lost the lease of {key!r} (its token {token} is stale)")
