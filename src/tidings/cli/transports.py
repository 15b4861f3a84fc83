"""`tidings relay` and `tidings consume`: an application's relay or consumer, run until a signal.

APP names, as `module:attribute`, a function of the opened async store that
returns an async context manager: entering it connects to the broker and
gives the `OutboxRelay` (for `relay`) or the consumer (for `consume`, an
`AsyncBrokerConsumer` or anything with `run()` and `stop()`); leaving it
disconnects (see `tidings.transports.supervision`). The command runs it
until SIGTERM or SIGINT, then finishes what is in hand (the relay its batch
and checkpoint, the consumer its delivery), disconnects and exits 0; a
second signal ends it at once. When the broker goes away it connects again,
waiting longer each time (up to `--max-backoff` seconds), one log line per
retry on stderr. A store that cannot be reached at start ends it with status
2 and one line, before anything connects.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import anyio
import typer

from tidings.cli.options import (
    StoreOption,
    import_attribute,
    postgres_refusal,
    with_connect_timeout,
)
from tidings.errors import ConfigurationError, StoreUnavailable
from tidings.store import AsyncEventStore
from tidings.store.urls import (
    DEFAULT_STORE_URL,
    STORE_URL_ENV,
    MemoryURL,
    PostgresURL,
    SQLiteURL,
    open_async_store,
    parse_store_url,
)
from tidings.transports.supervision import AsyncConsumerService, AsyncRelayService, Backoff

__all__ = ["OneLineFormatter", "consume", "relay"]

AppArgument = Annotated[
    str,
    typer.Argument(
        help="module:attribute: a function of the store giving an async context manager "
        "that connects and yields what to run.",
        show_default=False,
    ),
]
MaxBackoffOption = Annotated[
    float,
    typer.Option(
        "--max-backoff",
        min=0.1,
        metavar="SECONDS",
        help="The longest wait between attempts to connect again (from 0.5 s, doubling).",
    ),
]

Service = AsyncRelayService | AsyncConsumerService


def relay(
    app: AppArgument,
    store: StoreOption = DEFAULT_STORE_URL,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            min=0.01,
            metavar="SECONDS",
            help="How often the relay looks for new events when no commit wakes it.",
        ),
    ] = 1.0,
    max_backoff: MaxBackoffOption = 30.0,
) -> None:
    """Publish the log's events through the app's OutboxRelay until SIGTERM or SIGINT."""
    connect = _connection(app, store)
    backoff = _backoff(max_backoff)
    _run(
        "relay",
        store,
        lambda opened: AsyncRelayService(
            opened, connect, backoff=backoff, poll_interval=poll_interval
        ),
    )


def consume(
    app: AppArgument,
    store: StoreOption = DEFAULT_STORE_URL,
    max_backoff: MaxBackoffOption = 30.0,
) -> None:
    """Hand the broker's messages to the app's consumer until SIGTERM or SIGINT."""
    connect = _connection(app, store)
    backoff = _backoff(max_backoff)
    _run("consume", store, lambda opened: AsyncConsumerService(opened, connect, backoff=backoff))


def _backoff(most: float) -> Backoff:
    return Backoff(first=min(0.5, most), most=most)


def _connection(spec: str, store: str) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """The app's connection function that `spec` names; exit 2 if it names none."""
    # Set before the import, as `tidings serve` does: an app may read it when its module loads.
    os.environ[STORE_URL_ENV] = store
    found = import_attribute(spec, "APP")
    if not callable(found):
        module_name, _, attribute = spec.partition(":")
        raise typer.BadParameter(f"{module_name} has no function {attribute!r}", param_hint="APP")
    return found  # type: ignore[no-any-return]


class OneLineFormatter(logging.Formatter):
    """Each record on one line, a traceback reduced to its exception, for a service's log."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {error}"
        line = " ".join(message.split())
        return f"{self.formatTime(record)} {record.levelname} {record.name}: {line}"


def _run(command: str, url: str, service: Callable[[AsyncEventStore], Service]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    target = parse_store_url(url)
    if isinstance(target, MemoryURL):
        _exit(command, "a memory store holds nothing another process wrote: give --store")
    if isinstance(target, SQLiteURL) and not Path(target.path).exists():
        _exit(command, f"no event store at {target.path!r} (`tidings db init` creates one)")
    if isinstance(target, PostgresURL):
        _check_postgres(command, target)
    anyio.run(_serve, command, url, service)


async def _serve(command: str, url: str, service: Callable[[AsyncEventStore], Service]) -> None:
    opened = await _reachable_store(command, url)
    try:
        running = service(opened)
        refused: ConfigurationError | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, running, tasks.cancel_scope)
            try:
                await running.run()
            except ConfigurationError as exc:  # raised out of the group, not in an ExceptionGroup
                refused = exc
            tasks.cancel_scope.cancel()
        if refused is not None:
            raise refused
    finally:
        with anyio.CancelScope(shield=True):
            await opened.aclose()


async def _stop_on_signal(service: Service, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        stopping = False
        async for received in signals:
            if stopping:  # a second signal: no more waiting
                scope.cancel()
                return
            stopping = True
            logging.getLogger("tidings.transports").info(
                "%s: stopping after what is in hand", signal.Signals(received).name
            )
            service.stop()


async def _reachable_store(command: str, url: str) -> AsyncEventStore:
    """The store at `url`, answering; exit 2 with one line if it cannot be used."""
    target = parse_store_url(url)
    opened = open_async_store(url)
    try:
        await opened.head_position()
    except StoreUnavailable as exc:
        await opened.aclose()
        _exit(command, f"cannot use the store {target}: {exc}")
    return opened


def _check_postgres(command: str, target: PostgresURL) -> None:
    """Connect once, within the CLI's connect timeout, where the store's pool would retry long."""
    try:
        import psycopg  # noqa: F401 - the postgres extra, or its absence said in one line
    except ModuleNotFoundError as exc:
        _exit(command, str(exc))
    refused = postgres_refusal(target, with_connect_timeout(target).conninfo, must_exist=False)
    if refused is not None:
        _exit(command, refused)


def _exit(command: str, message: str) -> NoReturn:
    line = " ".join(message.split())
    typer.echo(f"tidings {command}: error: {line}", err=True)
    raise typer.Exit(2)
