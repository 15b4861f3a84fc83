"""`tidings dlq`: list, count, inspect, retry and drop the dead letters kept in the event store.

Dead letters are in the store's database when the application's bus was
built with `dead_letters=SQLDeadLetters(store)`, and projection runners over
a SQLite or PostgreSQL store keep theirs there too, under the handler
`projection:<name>`; the event a projection is parked on is one, marked
parked. Listing, showing and dropping need only `--store`; an event whose
class is not importable shows as its stored JSON (`--import MODULE` loads
the classes). Dropping a parked letter skips the event: the projection runs
on from the next one.

Retrying runs the failed handler again, so it needs the application. A bus
handler's letter needs `--app module:factory`, a function that takes the
opened event store and returns the application's `MessageBus`, built over
`SQLDeadLetters(store)` (the same composition root the application runs
with, in blocking form), or an async function that takes an `AsyncEventStore`
and returns its `AsyncMessageBus`, built over `AsyncSQLDeadLetters(store)`,
which is awaited and retries on an event loop. Given to `list` and `show`,
`--app` decodes the letters' events with the codec of its dead letters,
upcasters included. A projection's letter needs `--projections
module:attribute`, as `tidings projections` does: the handler runs here and
the letter is dropped on success; a parked letter resumes its projection,
whose runner tries the event again. A parked saga's letter (handler
`saga:<name>`) needs `--sagas module:attribute`, the saga definitions: the
saga is resumed and run here, and cannot be dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
import typer

from tidings.cli.group import TidingsGroup
from tidings.cli.options import (
    AppFactory,
    AppOption,
    ImportOption,
    JsonOption,
    StoreOption,
    app_codec,
    built_async_bus,
    built_bus,
    import_attribute,
    import_modules,
    is_async_factory,
    load_app_factory,
    opened_async_store,
    opened_store,
    parse_uuid,
)
from tidings.cli.projections import PROJECTIONS_ENV, load_projections
from tidings.codec import Codec
from tidings.dead_letters import AsyncSQLDeadLetters, DeadLetter, SQLDeadLetters, UndecodedEvent
from tidings.projections import ProjectionRunner, projection_of
from tidings.sagas import Saga, SagaRunner, SagaStatus, saga_of
from tidings.store import EventStore
from tidings.store.urls import DEFAULT_STORE_URL, MemoryURL, parse_store_url

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    cls=TidingsGroup,
    name="dlq",
    help="List, count, inspect, retry and drop dead letters kept in the event store.",
    no_args_is_help=True,
    add_completion=False,
)

ProjectionsOption = Annotated[
    str | None,
    typer.Option(
        "--projections",
        "-p",
        envvar=PROJECTIONS_ENV,
        show_envvar=True,
        metavar="MODULE:ATTRIBUTE",
        help="The projections, as for `tidings projections` (to retry a projection's letter).",
    ),
]
SagasOption = Annotated[
    str | None,
    typer.Option(
        "--sagas",
        metavar="MODULE:ATTRIBUTE",
        help="The saga definitions, a list of Saga (to resume a parked saga's letter).",
    ),
]
HandlerOption = Annotated[
    str | None,
    typer.Option(
        "--handler", help="Only letters of this handler (its full name, or projection:NAME)."
    ),
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")]
AfterOption = Annotated[
    str | None,
    typer.Option(
        "--after", metavar="ID", help="Start after this letter: the last one of the page before."
    ),
]


@dlq_app.command("list")
def list_letters(
    store: StoreOption = DEFAULT_STORE_URL,
    handler: HandlerOption = None,
    after: AfterOption = None,
    limit: LimitOption = 100,
    json_lines: JsonOption = False,
    modules: ImportOption = None,
    app: AppOption = None,
) -> None:
    """The dead letters, oldest first: id, time, handler, event type, attempts, error.

    A full page ends with the `--after ID` that lists the next one.
    """
    codec = _codec(modules, app, store)
    cursor = None if after is None else parse_uuid(after, "--after")
    with _letters(store, codec) as (_, letters):
        try:
            found = letters.list(handler=handler, after=cursor, limit=limit + 1)
        except KeyError:
            raise typer.BadParameter(
                f"no dead letter {cursor} (retried or dropped since?)", param_hint="--after"
            ) from None
    more, found = len(found) > limit, found[:limit]
    if json_lines:
        for letter in found:
            typer.echo(json.dumps(_summary(letter)))
        return
    if not found:
        typer.echo("no dead letters")
        return
    for letter in found:
        error = letter.error.splitlines()[0] if letter.error else ""
        parked = "  parked" if letter.parked else ""
        typer.echo(
            f"{letter.id}  {letter.failed_at:%Y-%m-%d %H:%M:%S}  {letter.handler}{parked}  "
            f"{letter.message_type}  x{letter.attempts}  {error}"
        )
    if more:
        typer.echo(f"more: --after {found[-1].id}")


@dlq_app.command()
def count(
    store: StoreOption = DEFAULT_STORE_URL,
    handler: HandlerOption = None,
    per_handler: Annotated[
        bool, typer.Option("--per-handler", help="One line per handler: its count and name.")
    ] = False,
    json_lines: JsonOption = False,
) -> None:
    """How many dead letters there are: a number, or one line per handler."""
    if per_handler and handler is not None:
        raise typer.BadParameter(
            "not with --handler: --per-handler counts every handler", param_hint="--per-handler"
        )
    with _letters(store) as (_, letters):
        if not per_handler:
            total = letters.count(handler=handler)
            typer.echo(json.dumps({"handler": handler, "count": total}) if json_lines else total)
            return
        counts = letters.count_by_handler()
    width = max((len(str(n)) for n in counts.values()), default=1)
    for name, letters_of in counts.items():
        if json_lines:
            typer.echo(json.dumps({"handler": name, "count": letters_of}))
        else:
            typer.echo(f"{letters_of:>{width}}  {name}")


@dlq_app.command()
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's id.")],
    store: StoreOption = DEFAULT_STORE_URL,
    json_lines: JsonOption = False,
    modules: ImportOption = None,
    app: AppOption = None,
) -> None:
    """One dead letter in full: its event, envelope, error and traceback.

    An event that cannot be decoded is shown as stored, with why (`undecoded`).
    """
    codec = _codec(modules, app, store)
    wanted = parse_uuid(letter_id, "ID")
    with _letters(store, codec) as (_, letters):
        letter = _get(letters, wanted)
    detail = {**_summary(letter), "traceback": letter.traceback}
    if json_lines:
        typer.echo(json.dumps(detail))
        return
    for key in ("id", "handler", "parked", "event_type", "attempts", "failed_at", "error"):
        typer.echo(f"{key}: {detail[key]}")
    if detail["undecoded"] is not None:
        typer.echo(f"undecoded: {detail['undecoded']}")
    for key in ("message_id", "correlation_id", "causation_id", "stream", "version", "position"):
        typer.echo(f"{key}: {detail[key]}")
    typer.echo(f"event: {json.dumps(detail['event'])}")
    typer.echo("traceback:")
    typer.echo(letter.traceback.rstrip())


@dlq_app.command()
def retry(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's id.")],
    store: StoreOption = DEFAULT_STORE_URL,
    app: AppOption = None,
    projections: ProjectionsOption = None,
    sagas: SagasOption = None,
) -> None:
    """Run the letter's handler again; on success the letter is dropped (exit 0), else kept (1).

    A parked projection's letter resumes the projection: its runner tries the event again.
    A parked saga's letter resumes the saga and runs it here.
    """
    wanted = parse_uuid(letter_id, "ID")
    with _letters(store) as (event_store, letters):
        letter = _get(letters, wanted)
        name = projection_of(letter.handler)
        saga = saga_of(letter.handler)
        if saga is not None:
            delivered = _resume_saga(event_store, letter, saga, sagas)
        elif name is None:
            delivered = _retry_on_bus(event_store, store, wanted, app)
        elif letter.parked:
            _runner(event_store, projections, name).resume(name)
            typer.echo(f"{wanted}: projection {name} resumed; its runner tries the event again")
            return
        else:
            runner = _runner(event_store, projections, name)
            try:
                delivered = runner.retry_dead_letter(wanted)
            except LookupError as exc:
                raise typer.BadParameter(str(exc).strip("'\""), param_hint="ID") from None
    if delivered:
        typer.echo(f"{wanted}: delivered, dropped from the dead letters")
        return
    typer.echo(f"{wanted}: failed again, kept as a new dead letter", err=True)
    raise typer.Exit(1)


@dlq_app.command()
def drop(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's id.")],
    store: StoreOption = DEFAULT_STORE_URL,
) -> None:
    """Forget a dead letter without running its handler; a parked projection skips its event."""
    wanted = parse_uuid(letter_id, "ID")
    with _letters(store) as (event_store, letters):
        letter = _get(letters, wanted)
        if letter.parked and saga_of(letter.handler) is not None:
            raise typer.BadParameter(
                f"{wanted} is a parked saga, which waits to be resumed: "
                "tidings dlq retry ID --sagas MODULE:ATTRIBUTE",
                param_hint="ID",
            )
        name = projection_of(letter.handler)
        if letter.parked and name is not None:
            try:
                ProjectionRunner(event_store, []).skip(name)
            except ValueError:
                pass  # no longer parked on it: the letter is stale, dropped below
            else:
                typer.echo(f"{wanted}: dropped; projection {name} runs on from the next event")
                return
        try:
            letters.remove(wanted)
        except KeyError:
            raise typer.BadParameter(f"no dead letter {wanted}", param_hint="ID") from None
    typer.echo(f"{wanted}: dropped")


def _retry_on_bus(event_store: EventStore, url: str, letter_id: UUID, app: str | None) -> bool:
    if app is None:
        raise typer.BadParameter(
            "retrying a bus handler's letter needs the application's bus", param_hint="--app"
        )
    factory = load_app_factory(app)
    if is_async_factory(factory):
        return anyio.run(_retry_on_async_bus, factory, url, letter_id, app)
    bus = built_bus(app, factory, event_store)
    if not isinstance(bus.dead_letters, SQLDeadLetters):
        _in_memory(app, "SQLDeadLetters")
    try:
        return bus.retry_dead_letter(letter_id)
    except LookupError as exc:
        raise typer.BadParameter(str(exc).strip("'\""), param_hint="ID") from None


async def _retry_on_async_bus(factory: AppFactory, url: str, letter_id: UUID, app: str) -> bool:
    """Retry on the bus an async factory builds, over an async store of its own."""
    async with opened_async_store(url) as store:
        bus = await built_async_bus(app, factory, store)
        if not isinstance(bus.dead_letters, AsyncSQLDeadLetters):
            _in_memory(app, "AsyncSQLDeadLetters")
        try:
            return await bus.retry_dead_letter(letter_id)
        except LookupError as exc:
            raise typer.BadParameter(str(exc).strip("'\""), param_hint="ID") from None


def _in_memory(app: str, durable: str) -> None:
    raise typer.BadParameter(
        f"the bus from {app} keeps its dead letters in memory: build it with "
        f"dead_letters={durable}(store)",
        param_hint="--app",
    )


def _codec(modules: list[str] | None, app: str | None, url: str) -> Codec:
    """The codec that decodes the letters' events: the application's with --app."""
    import_modules(modules)
    return Codec() if app is None else app_codec(app, url)


def _resume_saga(event_store: EventStore, letter: DeadLetter, name: str, spec: str | None) -> bool:
    """Resume the parked saga of `letter` and run it here; whether it then ended."""
    if spec is None:
        raise typer.BadParameter(
            f"resuming a parked {name} saga needs the saga definitions", param_hint="--sagas"
        )
    found = import_attribute(spec, "--sagas")
    if not isinstance(found, list | tuple) or not all(isinstance(s, Saga) for s in found):
        raise typer.BadParameter(f"{spec} is not a list of Saga", param_hint="--sagas")
    runner = SagaRunner(event_store, found)
    if name not in runner.sagas:
        known = ", ".join(sorted(runner.sagas)) or "none"
        raise typer.BadParameter(
            f"{spec} has no saga named {name!r} (known: {known})", param_hint="--sagas"
        )
    stream = letter.envelope.stream or ""
    state = runner.resume(name, stream[len(name) + 1 :])
    typer.echo(f"{letter.id}: saga {stream} resumed, now {state.status}")
    return state.status is not SagaStatus.PARKED


def _runner(event_store: EventStore, spec: str | None, name: str) -> ProjectionRunner:
    """A runner of the application's projections, which must include `name`."""
    if spec is None:
        raise typer.BadParameter(
            f"retrying a letter of projection {name} needs the application's projections",
            param_hint="--projections",
        )
    runner = ProjectionRunner(event_store, load_projections(spec, event_store))
    if name not in runner.projections:
        known = ", ".join(sorted(runner.projections)) or "none"
        raise typer.BadParameter(
            f"{spec} has no projection named {name!r} (known: {known})",
            param_hint="--projections",
        )
    return runner


@contextmanager
def _letters(url: str, codec: Codec | None = None) -> Iterator[tuple[EventStore, SQLDeadLetters]]:
    if isinstance(parse_store_url(url), MemoryURL):
        raise typer.BadParameter(
            "the memory store keeps no dead letters between processes", param_hint="--store"
        )
    with opened_store(url) as store:
        yield store, SQLDeadLetters(store, codec=codec)


def _get(letters: SQLDeadLetters, letter_id: Any) -> DeadLetter:
    try:
        return letters.get(letter_id)
    except KeyError:
        raise typer.BadParameter(f"no dead letter {letter_id}", param_hint="ID") from None


def _summary(letter: DeadLetter) -> dict[str, Any]:
    envelope = letter.envelope
    message = envelope.message
    undecoded = None
    if isinstance(message, UndecodedEvent):
        event: Any = json.loads(message.data)
        undecoded = message.reason
    else:
        event = msgspec.to_builtins(message)
    return {
        "id": str(letter.id),
        "handler": letter.handler,
        "parked": letter.parked,
        "event_type": letter.message_type,
        "attempts": letter.attempts,
        "failed_at": letter.failed_at.isoformat(),
        "error": letter.error,
        "message_id": str(envelope.message_id),
        "correlation_id": str(envelope.correlation_id),
        "causation_id": None if envelope.causation_id is None else str(envelope.causation_id),
        "stream": envelope.stream,
        "version": envelope.version,
        "position": envelope.position,
        "event": event,
        "undecoded": undecoded,
    }
