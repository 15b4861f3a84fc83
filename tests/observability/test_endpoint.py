"""`tidings worker --metrics-port`: Prometheus text on 127.0.0.1, with the projections' lag."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from tests.observability.bank import Open, bank
from tidings import SQLiteStore
from tidings.observability.prometheus import MetricsEndpoint, ScrapeReader

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"metrics on (http://127\.0\.0\.1:\d+/metrics)")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text: str = response.read().decode()
    return text


def test_a_worker_serves_its_lag_and_dead_letters_as_prometheus_text(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(str(path))
    bus = bank(store, [])
    bus.handle(Open("bad"))  # parks the projection: its lag stays at 2
    bus.handle(Open("acc-1"))
    store.close()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings",
            "worker",
            "tests.observability.worker_app:worker",
            "--store",
            f"sqlite:///{path}",
            "--metrics-port",
            "0",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        while not (found := URL.search("".join(lines))):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = found.group(1)
        deadline = time.monotonic() + 15
        text = scrape(url)
        # The batch is timed once it ends, after its dead letter is counted.
        while "tidings_handler_duration_seconds_count" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = scrape(url)
        assert 'tidings_projection_lag{tidings_projection="observability_accounts"} 2' in text
        assert "# TYPE tidings_dead_letters_total counter" in text
        assert re.search(r"tidings_dead_letters_total\{[^}]*tidings_parked=\"true\"[^}]*\} 1", text)
        assert "tidings_retries_total{" in text
        assert "# TYPE tidings_handler_duration_seconds histogram" in text
        assert 'le="+Inf"' in text
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=5)
        assert missing.value.code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0


def test_a_port_taken_exits_2_with_one_line(tmp_path: Path) -> None:
    reader = ScrapeReader()
    MeterProvider(metric_readers=[reader])
    taken = MetricsEndpoint(reader, "127.0.0.1", 0)
    try:
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "tidings",
                "worker",
                "tests.observability.worker_app:worker",
                "--store",
                f"sqlite:///{tmp_path / 'events.db'}",
                "--metrics-port",
                str(taken.port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        taken.close()
    assert process.returncode == 2
    [line] = process.stderr.strip().splitlines()
    assert f"cannot serve metrics on 127.0.0.1:{taken.port}" in line


def test_the_exposition_escapes_labels_and_writes_cumulative_buckets() -> None:
    reader = ScrapeReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    meter.create_counter("tidings.appends").add(3, {"messaging.destination.name": 'a"b\\c\nd'})
    histogram = meter.create_histogram("tidings.handler.duration", unit="s")
    for seconds in (0.001, 0.02, 7.0):
        histogram.record(seconds, {"tidings.handler": "h"})
    text = reader.scrape()
    assert 'tidings_appends_total{messaging_destination_name="a\\"b\\\\c\\nd"} 3\n' in text
    assert 'tidings_handler_duration_seconds_bucket{tidings_handler="h",le="0"} 0\n' in text
    assert 'tidings_handler_duration_seconds_bucket{tidings_handler="h",le="5"} 2\n' in text
    assert 'tidings_handler_duration_seconds_bucket{tidings_handler="h",le="+Inf"} 3\n' in text
    assert 'tidings_handler_duration_seconds_count{tidings_handler="h"} 3\n' in text
    assert 'tidings_handler_duration_seconds_sum{tidings_handler="h"} 7.021\n' in text
