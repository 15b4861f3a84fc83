"""A transaction held open past 10 s while 500 later events commit: no reader skips it.

A transaction appends, then stays open for `HOLD` seconds before it commits
(or, in the rollback variant, rolls back), while writers append 500 events
and a reader tails `$all` from where it started, as a subscriber does. On
PostgreSQL both variants run at once and the later events commit meanwhile:
readers must not see them before the held transactions end, since those hold
smaller positions and may still commit, and the watermark must say so. On
SQLite writers wait for the write lock, as long as the store's timeout lets
them, and commit after. Either way the reader ends with the whole log in
order, each event once, the committed transaction's events among them and
none of the rolled back one's.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.reliability.figures import Figures
from tests.reliability.history import History
from tidings.store import EventStore, NewEvent, RecordedEvent, SQLiteStore, Watermark
from tidings.store.urls import open_store

HOLD = 10.5
LATER = 500
WRITERS = 4
PATIENCE = 60.0


def writer_store(url: str) -> EventStore:
    """A store of its own for one writer; on SQLite waiting out the held write lock."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"), timeout=PATIENCE)
    return open_store(url)


def event() -> NewEvent:
    key = uuid.uuid4()
    return NewEvent(key, "Later", 1, b"{}", key, None, datetime.now(UTC))


@dataclass
class Held:
    """A transaction that appends, waits until told, then commits or rolls back."""

    store: EventStore
    outcome: str
    events: list[NewEvent] = field(default_factory=lambda: [event() for _ in range(3)])
    appended: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    ended_at: float = float("inf")
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.store.transaction() as tx:
                tx.append(f"Held-{self.outcome}", self.events)
                self.appended.set()
                assert self.release.wait(PATIENCE)
                if self.outcome == "rollback":
                    tx.rollback()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.appended.set()


@dataclass
class Reader:
    """Tails `$all` after `start` in small pages, noting when it saw each event."""

    store: EventStore
    start: int
    seen: list[tuple[float, RecordedEvent]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        after = self.start
        while not self.stop.is_set():
            page = self.store.read_all(after=after, limit=50)
            now = time.monotonic()
            self.seen.extend((now, record) for record in page)
            if page:
                after = page[-1].position
            else:
                time.sleep(0.005)


def test_a_transaction_held_open_is_never_skipped(
    store_url: str, rng: random.Random, record_property: Callable[[str, object], None]
) -> None:
    postgres = not store_url.startswith("sqlite")
    figures = Figures("transaction held open past 10 s", workers=WRITERS + 2, events=LATER)
    history = History()
    store = open_store(store_url)
    start = store.append("Seed-1", [event()]).positions[-1]
    writers = [writer_store(store_url) for _ in range(WRITERS)]
    reader = Reader(open_store(store_url), start)
    marks: list[Watermark] = []
    released = 0.0
    seeds = [rng.randrange(2**32) for _ in range(WRITERS)]

    def write(index: int) -> None:
        own = random.Random(seeds[index])
        for number in range(LATER // WRITERS):
            batch = [event()]
            operation = history.invoke(batch[0].event_id, f"writer-{index}")
            stream = f"Later-{index}"
            if own.random() < 0.5:
                writers[index].append(stream, batch)
            else:
                with writers[index].transaction() as tx:
                    tx.append(stream, batch)
            history.complete(operation, "ok")
            if number % 40 == 0:
                time.sleep(own.uniform(0, 0.05))

    threads: list[threading.Thread] = []
    try:
        reading = threading.Thread(target=reader.run, daemon=True)
        reading.start()
        holds = [Held(open_store(store_url), outcome) for outcome in ("commit", "rollback")]
        rounds = [holds] if postgres else [[hold] for hold in holds]  # SQLite: one writer
        for held in rounds:
            began = time.monotonic()
            for hold in held:
                threading.Thread(target=hold.run, daemon=True).start()
                assert hold.appended.wait(PATIENCE)
            if not threads:  # the later writers start during the first hold
                threads = [
                    threading.Thread(target=write, args=(i,), daemon=True) for i in range(WRITERS)
                ]
                for thread in threads:
                    thread.start()
            while time.monotonic() - began < HOLD:
                if postgres:
                    marks.append(store.watermark())
                time.sleep(0.5)
            released = time.monotonic()
            for hold in held:
                hold.release.set()
            deadline = time.monotonic() + PATIENCE
            while any(hold.ended_at == float("inf") for hold in held):
                assert time.monotonic() < deadline, "a held transaction never ended"
                time.sleep(0.01)
        for thread in threads:
            thread.join(PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a writer never finished"
        expected = LATER + len(holds[0].events)
        deadline = time.monotonic() + PATIENCE
        while len(reader.seen) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # long enough to see an event too many
        reader.stop.set()
        reading.join(PATIENCE)
        log = store.read_all(after=start)
    finally:
        for opened in [store, reader.store, *writers, *(hold.store for hold in holds)]:
            opened.close()

    for hold in holds:
        assert hold.error is None, hold.error
    committed = holds[0]
    seen = [record for _, record in reader.seen]
    ids = [record.event_id for record in seen]
    violations = history.check(
        record.event_id for record in log if record.stream.startswith("Later-")
    )
    figures.events = len(log)
    figures.lost, figures.doubled = len(violations.lost), len(ids) - len(set(ids))
    figures.report(record_property)

    assert seen == log, "the reader's view differs from the log"
    assert figures.doubled == 0
    assert not violations, str(violations)
    assert [r.event_id for r in log if r.stream == "Held-commit"] == [
        e.event_id for e in committed.events
    ]
    assert not any(r.stream == "Held-rollback" for r in log)
    positions = [record.position for record in seen]
    assert positions == sorted(set(positions))
    if postgres:
        # Later events committed during the hold, but no reader saw one before it ended.
        first_later = min(at for at, record in reader.seen if record.stream.startswith("Later-"))
        assert first_later >= released
        assert any(mark.held_back >= LATER for mark in marks), (
            f"the watermark never showed the {LATER} events held back"
        )
        assert max(mark.held_for or 0.0 for mark in marks) >= HOLD - 1
