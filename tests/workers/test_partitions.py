"""Partitions in one process: their count is fixed until a rebuild, leases are fenced,
runners share the partitions out, and a poison event parks one partition only."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.projections.ledger import Backend, backend
from tests.store.readable import wait_readable
from tests.workers.visits import Visited, Visits, visit
from tidings import Envelope, MemoryStore
from tidings.projections import (
    PartitionsChanged,
    Projection,
    ProjectionRunner,
    ProjectionState,
    current_lease,
    handles,
    partition_of,
)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def stream_in(partition: int, partitions: int) -> str:
    return next(
        f"Visit-{i}" for i in range(1000) if partition_of(f"Visit-{i}", partitions) == partition
    )


class Handled(Projection[object]):
    """Every event handled, with the lease it was handled under; `gate` holds handlers back."""

    name = "handled"
    transactional = False
    partitions = 2

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.seen: list[tuple[str, int, int]] = []

    def reset(self, tx: object) -> None:
        self.seen.clear()

    @handles
    def visited(self, event: Visited, envelope: Envelope[Visited], tx: None) -> None:
        lease = current_lease()
        assert lease is not None and envelope.position is not None
        self.seen.append((lease.owner, lease.token, envelope.position))
        if self.gate is not None:
            self.gate.wait(10)


def test_a_different_partition_count_is_refused_until_a_rebuild(env: Backend) -> None:
    store = env.open(False)
    table = env.qualify("visit_history")
    ProjectionRunner(store, [Visits(table, 4)]).prepare()
    resized = ProjectionRunner(store, [Visits(table, 8)])
    with pytest.raises(PartitionsChanged) as raised:
        resized.prepare()
    assert (raised.value.projection, raised.value.recorded, raised.value.configured) == (
        "visits",
        4,
        8,
    )
    assert "'visits'" in str(raised.value) and "4" in str(raised.value)
    last = store.append("Visit-1", [visit(1), visit(2)]).positions[-1]
    wait_readable(store, last)
    resized.rebuild("visits")
    resized.prepare()
    found = resized.status()
    assert [(s.name, s.partition, s.partitions) for s in found] == [
        (f"visits#{i}", i, 8) for i in range(8)
    ]
    assert [(s.position, s.lag) for s in found] == [(last, 0)] * 8
    with pytest.raises(PartitionsChanged):
        ProjectionRunner(store, [Visits(table, 4)]).prepare()
    store.close()


def test_a_runner_whose_lease_was_taken_over_cannot_move_the_checkpoint(
    env: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    store = env.open(False)
    gate = threading.Event()
    slow, fast = Handled(gate), Handled()
    stream = stream_in(1, 2)  # the partition the slow runner keeps, surplus or not
    position = store.append(stream, [visit(1)]).positions[-1]
    first = ProjectionRunner(store, [slow], poll_interval=0.05, lease=0.5)
    second = ProjectionRunner(store, [fast], poll_interval=0.05, lease=0.5)
    caplog.set_level(logging.WARNING, "tidings.projections")
    try:
        with first.running():
            eventually(lambda: bool(slow.seen))  # handling, and no longer renewing
            with second.running():
                second.wait_for("handled", position, timeout=10)
                gate.set()
                eventually(lambda: "handled#1 dropped" in caplog.text)
                [status] = [s for s in second.status() if s.name == "handled#1"]
    finally:
        gate.set()
    assert slow.seen == [(first.owner, 1, position)]
    assert fast.seen == [(second.owner, 2, position)]
    assert status.owner == second.owner and status.position == position
    assert "lost the lease of 'handled#1' (its token 1 is stale)" in caplog.text
    store.close()


def test_runners_share_the_partitions_and_take_over_those_of_one_that_leaves() -> None:
    store = MemoryStore()
    first = ProjectionRunner(store, [Handled()], poll_interval=0.02, lease=0.3)
    second = ProjectionRunner(store, [Handled()], poll_interval=0.02, lease=0.3)
    everything = ["handled#0", "handled#1"]
    with first.running():
        eventually(lambda: first.held() == everything)
        with second.running():
            eventually(lambda: len(first.held()) == len(second.held()) == 1, timeout=5)
            assert sorted(first.held() + second.held()) == everything
        eventually(lambda: first.held() == everything, timeout=5)


def test_a_poison_event_parks_its_partition_while_the_others_keep_up(env: Backend) -> None:
    store = env.open(False)
    table = env.qualify("visit_history")
    poisoned = stream_in(2, 4)
    runner = ProjectionRunner(
        store, [Visits(table, 4, poison=0)], poll_interval=0.05, retry_waits=False
    )

    def settled() -> bool:
        return all(s.lag == 0 or s.state is ProjectionState.PARKED for s in runner.status())

    with runner.running():
        for n in range(1, 41):
            store.append(f"Visit-{n % 20}", [visit(n)])
        store.append(poisoned, [visit(0)])
        for n in range(41, 81):
            store.append(f"Visit-{n % 20}", [visit(n)])
        eventually(settled)
        found = {s.name: s for s in runner.status()}
        assert found["visits#2"].state is ProjectionState.PARKED
        assert "poison event 0" in (found["visits#2"].error or "")
        assert found["visits#2"].lag > 0
        for key in ("visits#0", "visits#1", "visits#3"):
            assert found[key].state is ProjectionState.RUNNING and found[key].lag == 0
        [letter] = runner.letters_of("visits")
        assert letter.handler == "projection:visits#2"
    store.close()
