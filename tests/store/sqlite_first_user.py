"""Processes that open SQLite stores on new files at the same moments: `python -m ... DIR I START`.

In each of `ROUNDS` rounds, the process waits until the wall-clock time
START + round * `ROUND_GAP` (the first after its imports, which take long),
then opens a store on `DIR/round-<round>.db` and appends once. Many of them
started together thus race, round after round, to create a new file, switch
it to WAL and make the schema. The process prints `appended` per round.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tidings.store import NewEvent, SQLiteStore

ROUNDS = 5
ROUND_GAP = 0.4


def main(folder: Path, index: int, start: float) -> None:
    for round_ in range(ROUNDS):
        time.sleep(max(0.0, start + round_ * ROUND_GAP - time.time()))
        store = SQLiteStore(folder / f"round-{round_}.db", timeout=30)
        try:
            event = NewEvent(
                uuid.uuid4(), "Started", 1, b"{}", uuid.uuid4(), None, datetime.now(UTC)
            )
            store.append(f"Process-{index}", [event])
        finally:
            store.close()
        print("appended", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
