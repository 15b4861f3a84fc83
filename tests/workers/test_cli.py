"""`tidings worker`: runs an application's worker, logs its partitions, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tidings(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidings", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_unreachable_store_exits_2_with_one_line() -> None:
    process = tidings(
        "worker", "tests.workers.app:worker", "--store", "postgresql://u@127.0.0.1:1/x?schema=s"
    )
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "cannot connect" in err


def test_a_worker_logs_its_partitions_and_gives_them_back_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    process = tidings("worker", "tests.workers.app:worker", "--store", url)
    assert process.stderr is not None
    lines: list[str] = []
    while not any("holds [0, 1, 2, 3]" in line for line in lines):
        line = process.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "left partition" in rest and "leases given back" in rest


def test_a_target_that_names_no_worker_exits_2_with_its_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    for target, reason in (
        ("tests.workers.app:missing", "has no attribute 'missing'"),
        ("tests.workers.visits:Visited", "is not a Worker"),
        ("no_such_module:worker", "cannot import 'no_such_module'"),
        ("tests.workers.app", "is not MODULE:ATTRIBUTE"),
    ):
        process = tidings("worker", target, "--store", url)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 2 and reason in err, (target, err)
