"""`tidings worker`: run what an application declares for the background, until SIGTERM.

The application names it with `module:attribute`: a `Worker`, or a function
that takes the store opened from `--store` and returns one. Each worker logs
the partitions it takes and gives back; run one per machine (or several per
machine) on the same store and they share every partitioned projection out.
SIGTERM or SIGINT lets each batch under way finish and gives the leases back;
the command then exits 0. A store that cannot be reached at start ends it
with status 2 and one line saying why.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer

from tidings._sync.worker import Worker
from tidings.cli.options import StoreOption, named_attribute, opened_store
from tidings.errors import StoreUnavailable
from tidings.store.urls import DEFAULT_STORE_URL

__all__ = ["load_worker", "worker"]

logger = logging.getLogger("tidings.worker")


def worker(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="The Worker, or a function of the opened store returning one.",
            show_default=False,
        ),
    ],
    store: StoreOption = DEFAULT_STORE_URL,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (needs tidings[otel]).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run an application's projections, durable handlers, process managers and schedulers."""
    _log_to_stderr()
    try:
        with opened_store(store, must_exist=False) as opened:
            found = load_worker(target, opened)
            try:
                found.prepare()
            except StoreUnavailable as exc:
                _unreachable(str(exc))
            if metrics_port is not None:
                _serve_metrics(found, metrics_port)
            _run(found)
    except typer.Exit as exc:
        if exc.exit_code == 1:  # the store could not be opened: its reason is printed
            raise typer.Exit(2) from None
        raise


def load_worker(spec: str, store: Any) -> Worker:
    """The worker `module:attribute` names; exit 2 saying why when it names none."""
    found: Any = named_attribute(spec, "MODULE:ATTRIBUTE")
    if callable(found) and not isinstance(found, Worker):
        found = found(store)
    if not isinstance(found, Worker):
        raise typer.BadParameter(
            f"{spec} is not a Worker, nor a function of the store returning one",
            param_hint="MODULE:ATTRIBUTE",
        )
    return found


def _run(found: Worker) -> None:
    def stop(number: int, frame: FrameType | None) -> None:
        logger.info("%s: stopping on %s", found.owner, signal.Signals(number).name)
        found.stop()
        # A second signal ends the process at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ", ".join(sorted(found.runner.projections)) or "no projections"
    logger.info("%s: running %s", found.owner, names)
    found.run()
    logger.info("%s: stopped, leases given back", found.owner)


def _serve_metrics(found: Worker, port: int) -> None:
    """Instrument this process and serve its metrics, with the worker's projections' lag."""
    try:
        from tidings.observability import cli
    except ImportError:
        _unreachable("--metrics-port needs OpenTelemetry: pip install 'tidings[otel]'")
    try:
        address = cli.serve_worker_metrics(found.runner, port)
    except OSError as exc:
        _unreachable(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}")
    logger.info("%s: metrics on %s", found.owner, address)


def _unreachable(reason: str) -> None:
    typer.echo(f"tidings worker: error: {' '.join(reason.split())}", err=True)
    raise typer.Exit(2)


def _log_to_stderr() -> None:
    """Log tidings' INFO lines (partitions taken and given back) on stderr, with the time."""
    root = logging.getLogger("tidings")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
