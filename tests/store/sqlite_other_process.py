"""Another process on a SQLite file, for tests of what one process sees of another's writes.

`python -m tests.store.sqlite_other_process hold PATH SECONDS` prints
`ready`; on a line on stdin it takes the file's write lock (`BEGIN
IMMEDIATE`, plain sqlite3), prints `holding`, keeps it `SECONDS`, then
commits and prints `released`.

`python -m tests.store.sqlite_other_process append PATH TIMEOUT` opens a
`SQLiteStore` with that timeout and prints `ready`; for each line it then
reads on stdin it appends one deposit to the ledger of the projection tests
and prints `appended POSITION`, or `unavailable` when the write lock stayed
out of reach for `TIMEOUT` seconds. It ends at the end of stdin.

`OtherProcess` starts one and reads its lines from the test's side.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.projections.ledger import deposit
from tidings.errors import StoreUnavailable
from tidings.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent.parent


class OtherProcess:
    """One of these processes, started from the repository's root; `stop` ends it."""

    def __init__(self, *args: str) -> None:
        self.holds = args[0] == "hold"
        self.holds_now = False  # told to take the lock, and took it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.store.sqlite_other_process", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        """The next line it prints (it prints each at once); empty once it has ended."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def send(self, text: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def hold(self) -> None:
        """Once ready, have it take the write lock; returns when it holds it."""
        assert self.line() == "ready"
        self.send()
        assert self.line() == "holding"
        self.holds_now = True

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End it: a holder at once (its lock goes with it), an appender at the end of stdin."""
        if self.holds:
            self.process.kill()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def hold(path: str, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    print("ready", flush=True)
    sys.stdin.readline()
    connection.execute("BEGIN IMMEDIATE")
    print("holding", flush=True)
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()
    print("released", flush=True)


def append(path: str, timeout: float) -> None:
    store = SQLiteStore(path, timeout=timeout)
    try:
        store.migrate()
        print("ready", flush=True)
        for _ in sys.stdin:
            try:
                result = store.append("Account-other", [deposit("other")])
            except StoreUnavailable:
                print("unavailable", flush=True)
                continue
            print("appended", result.positions[-1], flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    command, file, number = sys.argv[1:4]
    if command == "hold":
        hold(file, float(number))
    else:
        append(file, float(number))
