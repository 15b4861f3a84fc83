"""What `tidings worker --metrics-port` starts: instrumentation and the metrics endpoint.

Importing this module imports OpenTelemetry's SDK: an `ImportError` here
means the `otel` extra is missing.
"""

from __future__ import annotations

from tidings.observability import instrument
from tidings.observability.metrics import StatusSource, watch_projections
from tidings.observability.prometheus import serve_metrics

__all__ = ["serve_worker_metrics"]


def serve_worker_metrics(runner: StatusSource, port: int) -> str:
    """Instrument this process, serve its metrics and `runner`'s lag; the endpoint's URL.

    Raises `OSError` when the port cannot be bound.
    """
    endpoint, provider = serve_metrics(port)
    instrument(meter_provider=provider)
    watch_projections(runner, provider)
    return f"http://127.0.0.1:{endpoint.port}/metrics"
