"""What a SQLite append writes: WAL bytes and time per commit by index, and group commits' sizes.

Two tables, both counted in the WAL file (each frame is a page; a commit's
last frame records the database's size, every other frame 0):

- **rows**: one-event commits by hand (the store's statements) into a log of
  20,000 events, on the current schema and on variants of it: without the
  category index, without the correlation index, and with the stream's row
  rewritten on every append as schema 3 did. Bytes of WAL per commit, CPU
  per commit at `synchronous=OFF` (process time: what the statements and
  the index updates cost, whatever else runs on the machine), and commits
  per second at `synchronous=FULL`.
- **groups**: `SQLiteStore.append` from 1, 4 and 16 threads, one event per
  append: appends per commit, WAL bytes per append, appends per second.

Run: `uv run python -m benchmarks.store_writes [--commits 2000] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from tidings.messages import new_id
from tidings.store import NewEvent, SQLiteStore

_INSERT = (
    "INSERT INTO tidings_events (position, stream, category, version, event_id, type,"
    " schema_version, data, correlation_id, causation_id, occurred_at, headers)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STATE = (
    "SELECT (SELECT max(version) FROM tidings_events WHERE stream = name), deleted"
    " FROM tidings_streams WHERE name = ?"
)
_NEW_STREAM = "INSERT INTO tidings_streams (name, category) VALUES (?, ?)"
# Schema 3 kept the version on the stream's row, so every append rewrote it.
_OLD_UPSERT = (
    "INSERT INTO tidings_streams (name, category, version) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET version = excluded.version, deleted = 0"
)

# name: (statements turning schema 4 into the variant, whether every append rewrites the row)
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "schema 4": ((), False),
    "schema 4 without the category index": (("DROP INDEX tidings_events_category",), False),
    "schema 4 without the correlation index": (("DROP INDEX tidings_events_correlation",), False),
    "schema 3 (the stream row rewritten)": (
        ("ALTER TABLE tidings_streams ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
        True,
    ),
}
_FILL = 20_000


def wal_frames(path: Path) -> tuple[int, int]:
    """(bytes of frames, commits) in the database's WAL file since SQLite last restarted it."""
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        return 0, 0
    data = wal.read_bytes()
    if len(data) < 32:
        return 0, 0
    page_size = int.from_bytes(data[8:12], "big")
    salts = data[16:24]
    frames = commits = 0
    offset = 32
    while offset + 24 + page_size <= len(data):
        header = data[offset : offset + 24]
        if header[8:16] != salts:
            break
        frames += 1
        commits += int.from_bytes(header[4:8], "big") != 0
        offset += 24 + page_size
    return frames * (24 + page_size), commits


def _row(position: int, stream: str, version: int, now: str) -> tuple[object, ...]:
    return (
        position,
        stream,
        stream.partition("-")[0],
        version,
        new_id().bytes,
        "bench.Counted",
        1,
        b'{"amount":1}',
        new_id().bytes,
        None,
        now,
        b"",
    )


def commit_rows(
    path: Path, changes: Sequence[str], rewrite: bool, commits: int, synchronous: str
) -> tuple[float, float, float]:
    """(WAL bytes, CPU seconds, wall seconds) per one-event commit on a variant's file."""
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    for change in changes:
        connection.execute(change)
    now = datetime.now(UTC).isoformat()
    connection.execute("BEGIN")
    connection.executemany(
        _INSERT,
        [_row(p, f"Fill-{(p - 1) // 10}", (p - 1) % 10 + 1, now) for p in range(1, _FILL + 1)],
    )
    connection.executemany(_NEW_STREAM, [(f"Fill-{n}", "Fill") for n in range(_FILL // 10)])
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("PRAGMA wal_autocheckpoint = 0")  # every frame stays to be counted
    rows = [_row(_FILL + i + 1, f"T-{i // 10}", i % 10 + 1, now) for i in range(commits)]
    cpu, wall = time.process_time(), time.perf_counter()
    for i, row in enumerate(rows):
        stream = str(row[1])
        connection.execute("BEGIN IMMEDIATE")
        state = connection.execute(_STATE, (stream,)).fetchone()
        connection.execute(_INSERT, row)
        if rewrite:
            connection.execute(_OLD_UPSERT, (stream, "T", i % 10 + 1))
        elif state is None:
            connection.execute(_NEW_STREAM, (stream, "T"))
        connection.execute("COMMIT")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    frames, _ = wal_frames(path)
    connection.close()
    return frames / commits, cpu / commits, wall / commits


def rows_table(commits: int, repeats: int) -> list[str]:
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as directory:
        for run in range(repeats):  # interleaved, so that noise falls on every variant alike
            for n, (name, (changes, rewrite)) in enumerate(VARIANTS.items()):
                off = commit_rows(
                    Path(directory) / f"off-{run}-{n}.db", changes, rewrite, commits, "OFF"
                )
                full = commit_rows(
                    Path(directory) / f"full-{run}-{n}.db",
                    changes,
                    rewrite,
                    max(1, commits // 10),
                    "FULL",
                )
                measured[name].append((off[0], off[1], full[2]))
    lines = [
        "| schema | WAL bytes per commit | CPU per commit (OFF) | commits/s (FULL) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, runs in measured.items():
        wal = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        wall = statistics.median(r[2] for r in runs)
        lines.append(f"| {name} | {wal:,.0f} | {cpu * 1e6:.1f} µs | {1 / wall:,.0f} |")
    return lines


def _events() -> list[NewEvent]:
    now = datetime.now(UTC)
    return [NewEvent(new_id(), "bench.Counted", 1, b'{"amount":1}', new_id(), None, now)]


def group_run(directory: Path, threads: int, appends: int) -> tuple[int, int, float, float]:
    """(appends, commits, WAL bytes per append, appends/s) for `threads` writer threads."""
    path = directory / f"groups-{threads}-{time.monotonic_ns()}.db"
    store = SQLiteStore(path)
    store.append("Warm-1", _events())
    frames_before, commits_before = wal_frames(path)
    each = appends // threads
    barrier = threading.Barrier(threads)

    def writer(index: int) -> Callable[[], None]:
        batches = [_events() for _ in range(each)]

        def work() -> None:
            barrier.wait()
            for i, batch in enumerate(batches):
                store.append(f"W{index}-{i // 10}", batch, i % 10)

        return work

    workers = [threading.Thread(target=writer(i)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    frames, commits = wal_frames(path)
    store.close()
    done = each * threads
    wal = (frames - frames_before) / done
    return done, commits - commits_before, wal, done / elapsed


def groups_table(repeats: int) -> list[str]:
    lines = [
        "| threads | appends | commits | appends per commit | WAL bytes per append | appends/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    # Few enough pages that SQLite's automatic checkpoint (1,000 pages) leaves the WAL whole.
    with tempfile.TemporaryDirectory() as directory:
        for threads in (1, 4, 16):
            runs = [group_run(Path(directory), threads, 160) for _ in range(repeats)]
            done = runs[0][0]
            commits = statistics.median(r[1] for r in runs)
            wal = statistics.median(r[2] for r in runs)
            rate = statistics.median(r[3] for r in runs)
            lines.append(
                f"| {threads} | {done} | {commits:.0f} | {done / commits:.1f} | {wal:,.0f} "
                f"| {rate:,.0f} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commits", type=int, default=2000, help="commits per variant at OFF")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant, interleaved")
    args = parser.parse_args(argv)
    print(f"SQLite {sqlite3.sqlite_version}, median of {args.repeats} runs\n")
    print("\n".join(rows_table(args.commits, args.repeats)))
    print()
    print("\n".join(groups_table(args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
