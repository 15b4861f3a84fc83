"""A Prometheus text endpoint for the OpenTelemetry metrics of this process (`--metrics-port`).

`serve_metrics(port)` makes an SDK `MeterProvider` whose reader is collected
at each scrape (pass it to `instrument`), and serves `GET /metrics` in the
text exposition format (version 0.0.4) from a daemon thread, on 127.0.0.1
unless told otherwise. Names follow Prometheus' habits:
dots become underscores, seconds end in `_seconds`, counters in `_total`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    MetricReader,
    MetricsData,
    Sum,
)

__all__ = ["MetricsEndpoint", "ScrapeReader", "exposition", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ScrapeReader(MetricReader):
    """A reader collected when asked (at each scrape), not on a timer."""

    def __init__(self) -> None:
        super().__init__()
        self._data: MetricsData | None = None
        self._lock = threading.Lock()

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._data = metrics_data

    def scrape(self) -> str:
        """Collect now; the metrics as Prometheus text."""
        with self._lock:
            self._data = None
            self.collect()
            data = self._data
        return "" if data is None else exposition(data)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def exposition(data: MetricsData) -> str:
    """`data` in the Prometheus text format."""
    lines: list[str] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                unit, description = metric.unit or "", metric.description or ""
                lines.extend(_metric(metric.name, unit, description, metric.data))
    return "".join(line + "\n" for line in lines)


def _metric(name: str, unit: str, description: str, data: Any) -> Iterator[str]:
    base = name.replace(".", "_").replace("-", "_")
    if unit == "s":
        base += "_seconds"
    if isinstance(data, Sum) and data.is_monotonic:
        kind, base = "counter", base + "_total"
    elif isinstance(data, Sum | Gauge):
        kind = "gauge"
    elif isinstance(data, Histogram):
        kind = "histogram"
    else:
        return
    yield f"# HELP {base} {_help(description or name)}"
    yield f"# TYPE {base} {kind}"
    for point in data.data_points:
        labels = dict(point.attributes or {})
        if kind != "histogram":
            yield f"{base}{_labels(labels)} {_number(point.value)}"
            continue
        cumulative = 0
        for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
            cumulative += count
            yield f"{base}_bucket{_labels({**labels, 'le': _number(bound)})} {cumulative}"
        yield f"{base}_bucket{_labels({**labels, 'le': '+Inf'})} {point.count}"
        yield f"{base}_sum{_labels(labels)} {_number(point.sum)}"
        yield f"{base}_count{_labels(labels)} {point.count}"


def _labels(attributes: Mapping[str, Any]) -> str:
    if not attributes:
        return ""
    pairs = (
        f'{key.replace(".", "_")}="{_escape(_text(value))}"' for key, value in attributes.items()
    )
    return "{" + ",".join(pairs) + "}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer():
            return str(int(value)) if abs(value) < 1e15 else repr(value)
        return repr(value)
    return str(value)


class MetricsEndpoint:
    """The HTTP server of `GET /metrics`, running in a daemon thread until `close`."""

    def __init__(self, reader: ScrapeReader, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = reader.scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds are not worth a line each

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.reader = reader
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="tidings-metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when asked for 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(port: int, host: str = "127.0.0.1") -> tuple[MetricsEndpoint, MeterProvider]:
    """Serve this process's metrics on `http://host:port/metrics`; the server and its provider.

    The provider is the one to pass to `instrument(meter_provider=...)` and
    `watch_projections`. Raises `OSError` when the port cannot be bound.
    """
    reader = ScrapeReader()
    provider = MeterProvider(metric_readers=[reader])
    return MetricsEndpoint(reader, host, port), provider
