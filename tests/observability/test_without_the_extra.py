"""Without the `otel` extra: nothing of OpenTelemetry is imported, and asking for it says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run first in each child: OpenTelemetry cannot be imported, as when the extra is missing.
HIDDEN = "import sys; sys.modules['opentelemetry'] = None; "


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bus_unit_of_work_and_projection_run_without_importing_opentelemetry() -> None:
    code = """
import sys
from tests.observability.bank import Accounts, Open, bank
from tidings import MemoryStore, ProjectionRunner

store = MemoryStore()
bank(store, []).handle(Open("acc-1"))
projection = Accounts()
runner = ProjectionRunner(store, [projection], poll_interval=0.05)
with runner.running():
    runner.wait_for(projection.name, 1)
assert projection.seen == ["acc-1"], projection.seen
assert store.read_all()[0].headers == b""
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_instrument_without_the_extra_raises_import_error_naming_it() -> None:
    code = (
        HIDDEN
        + """
from tidings.observability import JsonFormatter, instrument
try:
    instrument()
except ImportError as exc:
    print(exc)
"""
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert "pip install 'tidings[otel]'" in done.stdout


def test_the_metrics_port_without_the_extra_exits_2_with_one_line(tmp_path: Path) -> None:
    code = HIDDEN + "from tidings.__main__ import main; sys.argv[0] = 'tidings'; main()"
    done = python(
        code,
        "worker",
        "tests.observability.worker_app:worker",
        "--store",
        f"sqlite:///{tmp_path / 'events.db'}",
        "--metrics-port",
        "0",
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line == (
        "tidings worker: error: --metrics-port needs OpenTelemetry: pip install 'tidings[otel]'"
    )
