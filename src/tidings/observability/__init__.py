"""Observing tidings: OpenTelemetry traces and metrics, structured logs.

One call turns tracing and metrics on, process-wide::

    from tidings.observability import instrument

    instrument(bus)  # every bus whose messages get spans; units of work and projections always

It needs the `otel` extra (`pip install tidings[otel]`); without it, and
until it is called, tidings imports nothing of OpenTelemetry and its seams
(`tidings.observability.hooks`) cost one check each. `JsonFormatter` and
the `extra` fields of tidings' log records need nothing but the standard
library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidings.observability.logs import FIELDS, JsonFormatter

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["FIELDS", "JsonFormatter", "instrument", "uninstrument"]

MISSING = "tidings.observability needs OpenTelemetry: pip install 'tidings[otel]'"


def instrument(
    *buses: Any,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Record spans and metrics of tidings at work in this process, from now on.

    Units of work (their appends, with the trace context in each event's
    headers) and projection runners (their batches, retries and dead letters)
    are observed process-wide; each bus given (`MessageBus` or
    `AsyncMessageBus`) gets middleware, outermost, giving each message it
    dispatches a span. The providers default to OpenTelemetry's global ones.
    Calling it again replaces the providers of the units of work and
    projections; a bus instrumented twice gets two spans per message.
    Raises `ImportError` without the `otel` extra.
    """
    try:
        from opentelemetry.metrics import get_meter
        from opentelemetry.trace import get_tracer
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError(MISSING) from exc
    from tidings._async.bus import AsyncMessageBus
    from tidings._sync.bus import MessageBus
    from tidings.observability import hooks
    from tidings.observability.metrics import Instruments
    from tidings.observability.tracing import AsyncObserveMessages, ObserveMessages, Telemetry

    telemetry = Telemetry(
        get_tracer("tidings", tracer_provider=tracer_provider),
        Instruments(get_meter("tidings", meter_provider=meter_provider)),
    )
    for bus in buses:
        if isinstance(bus, AsyncMessageBus):
            bus.add_middleware(AsyncObserveMessages(telemetry))
        elif isinstance(bus, MessageBus):
            bus.add_middleware(ObserveMessages(telemetry))
        else:
            raise TypeError(f"instrument() takes message buses, not {bus!r}")
    hooks.install(telemetry)


def uninstrument() -> None:
    """Stop observing units of work and projections (buses keep their middleware)."""
    from tidings.observability import hooks

    hooks.install(None)
