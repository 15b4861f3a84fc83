"""A writer process to SIGKILL.

    python -m tests.reliability.kill_writer URL INDEX OPS LOG SEED [PAUSE]

It appends `OPS` operations to stream `Writer-INDEX`, each a batch of one to
three events whose data names the operation, alternately as plain appends and
in transactions. Before each attempt it writes `invoke <op> <event ids>` to
its log file and after the store acknowledged it `ok <op>`, flushing each
line, so a kill between the two leaves an operation whose outcome the writer
never learnt. Started again on the same log, it first retries such an
operation with the same event ids, as the store allows, then carries on.
It pauses up to PAUSE seconds between operations (so that a run spans
the kills on a fast machine too) and prints `done` when all its
operations are acknowledged.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tidings.store import NewEvent
from tidings.store.urls import open_store


def batch(operation: str, ids: list[uuid.UUID]) -> list[NewEvent]:
    data = json.dumps({"operation": operation}).encode()
    return [NewEvent(key, "Written", 1, data, key, None, datetime.now(UTC)) for key in ids]


def pending(log: Path) -> tuple[list[tuple[str, list[uuid.UUID]]], int]:
    """The operations invoked but never acknowledged, and how many were invoked."""
    invoked: dict[str, list[uuid.UUID]] = {}
    done: set[str] = set()
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            try:
                if parts[0] == "invoke":
                    invoked[parts[1]] = [uuid.UUID(key) for key in parts[2].split(",")]
                elif parts[0] == "ok":
                    done.add(parts[1])
            except (IndexError, ValueError):
                continue  # a line cut short by the kill: its append never began
    return [(op, ids) for op, ids in invoked.items() if op not in done], len(invoked)


def main(
    url: str, index: int, operations: int, log_path: str, seed: int, pause: float = 0.0
) -> None:
    log = Path(log_path)
    retry, started = pending(log)
    own = random.Random(seed * 1000 + started)
    store = open_store(url)
    with log.open("a") as out:

        def write(operation: str, ids: list[uuid.UUID], in_transaction: bool) -> None:
            out.write(f"invoke {operation} {','.join(map(str, ids))}\n")
            out.flush()
            events = batch(operation, ids)
            if in_transaction:
                with store.transaction() as tx:
                    tx.append(f"Writer-{index}", events)
            else:
                store.append(f"Writer-{index}", events)
            out.write(f"ok {operation}\n")
            out.flush()

        for operation, ids in retry:  # same ids: stored at most once, whatever happened
            write(operation, ids, own.random() < 0.5)
        for number in range(started, operations):
            ids = [uuid.uuid4() for _ in range(own.randint(1, 3))]
            write(f"writer-{index}-{number}", ids, own.random() < 0.5)
            time.sleep(own.uniform(0, pause))
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), pause)
