"""Options shared by the commands, and opening the store they name."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import anyio
import typer

from tidings._async.bus import AsyncMessageBus
from tidings._sync.bus import MessageBus
from tidings.cli.group import fail
from tidings.cli.output import Decoding
from tidings.codec import Codec
from tidings.dead_letters import AsyncSQLDeadLetters, SQLDeadLetters
from tidings.store import AsyncEventStore, EventStore
from tidings.store.urls import (
    STORE_URL_ENV,
    PostgresURL,
    SQLiteURL,
    open_async_store,
    open_store,
    parse_store_url,
)

__all__ = [
    "AfterOption",
    "AppFactory",
    "AppOption",
    "CategoryOption",
    "ImportOption",
    "JsonOption",
    "LimitOption",
    "StoreOption",
    "TypeOption",
    "app_codec",
    "check_categories",
    "check_store_url",
    "built_async_bus",
    "built_bus",
    "check_types",
    "decoding",
    "import_attribute",
    "import_modules",
    "is_async_factory",
    "load_app_factory",
    "opened_async_store",
    "opened_store",
    "parse_uuid",
    "postgres_refusal",
    "require_postgres_extra",
    "with_connect_timeout",
]

CONNECT_TIMEOUT = 3
"""Seconds the commands wait for a PostgreSQL server to answer, unless the URL says otherwise."""


def check_store_url(url: str) -> str:
    """The store URL, once it parses; else exit 2 with why."""
    try:
        parse_store_url(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return url


StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        metavar="URL",
        envvar=STORE_URL_ENV,
        show_envvar=True,
        callback=check_store_url,
        help="Event store: sqlite:///path.db, a file path, postgresql://...?schema=name, memory:.",
    ),
]
AfterOption = Annotated[
    int,
    typer.Option(
        "--after", min=0, metavar="N", help="Start after this position (version with --stream)."
    ),
]
LimitOption = Annotated[
    int, typer.Option("--limit", min=1, metavar="N", help="Show at most this many.")
]
CategoryOption = Annotated[
    list[str] | None,
    typer.Option(
        "--category", "-c", metavar="CATEGORY", help="Only streams of this category (repeatable)."
    ),
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", metavar="TYPE", help="Only events of this type (repeatable)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
ImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        "-i",
        metavar="MODULE",
        help="Import MODULE first, so its event classes decode payloads (repeatable).",
    ),
]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:FACTORY",
        help="The application: a function taking the event store and returning its MessageBus, "
        "or an async function taking an AsyncEventStore and returning its AsyncMessageBus. "
        "Built over SQL dead letters, whose codec (with its upcasters) decodes payloads.",
    ),
]

AppFactory = Callable[[EventStore | AsyncEventStore], object]
"""`--app`: `(EventStore) -> MessageBus`, or an async `(AsyncEventStore) -> AsyncMessageBus`."""


def check_categories(categories: list[str] | None) -> list[str] | None:
    """The categories, each a stream name's part before its first dash; else exit 2."""
    for category in categories or ():
        if not category or "-" in category:
            raise typer.BadParameter(
                f"{category!r} is not a category: a category is the part of a stream name "
                "before its first dash, so it is not empty and has no dash",
                param_hint="--category",
            )
    return categories or None


def check_types(types: list[str] | None) -> list[str] | None:
    if any(not name for name in types or ()):
        raise typer.BadParameter("an event type name is not empty", param_hint="--type")
    return types or None


def parse_uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a UUID", param_hint=what) from None


def import_attribute(spec: str, option: str, shape: str = "MODULE:ATTRIBUTE") -> Any:
    """What `module:attribute` names (None if nothing), importing from the working directory."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"{spec!r} is not {shape}", param_hint=option)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint=option
        ) from None
    return getattr(module, attribute, None)


def named_attribute(spec: str, option: str) -> Any:
    """What `module:attribute` names; exit 2 saying so when the module has no such attribute."""
    found = import_attribute(spec, option)
    if found is None:
        module_name, _, attribute = spec.partition(":")
        raise typer.BadParameter(
            f"module {module_name!r} has no attribute {attribute!r}", param_hint=option
        )
    return found


def load_app_factory(spec: str) -> AppFactory:
    """The function `--app` names; exit 2 if it names none."""
    factory = import_attribute(spec, "--app", "MODULE:FACTORY (e.g. myapp.bootstrap:cli_bus)")
    if not callable(factory):
        module_name, _, attribute = spec.partition(":")
        raise typer.BadParameter(f"{module_name} has no function {attribute!r}", param_hint="--app")
    return factory  # type: ignore[no-any-return]


def is_async_factory(factory: AppFactory) -> bool:
    """Whether the factory is an async function, to be given an async store and awaited."""
    call = factory if inspect.isroutine(factory) else type(factory).__call__
    return inspect.iscoroutinefunction(call)


def built_bus(spec: str, factory: AppFactory, store: EventStore) -> MessageBus:
    """The bus a blocking factory builds over `store`; exit 2 when it builds something else."""
    return _checked(spec, factory(store), MessageBus)


async def built_async_bus(
    spec: str, factory: AppFactory, store: AsyncEventStore
) -> AsyncMessageBus:
    """The bus an async factory builds over `store`, awaited; exit 2 for anything else."""
    made = factory(store)
    return _checked(spec, await made if inspect.isawaitable(made) else made, AsyncMessageBus)


B = TypeVar("B", MessageBus, AsyncMessageBus)


def _checked(spec: str, made: object, wanted: type[B]) -> B:
    if isinstance(made, wanted):
        return made
    name = wanted.__name__
    if isinstance(made, MessageBus | AsyncMessageBus):
        shape = "a plain def taking an EventStore"
        if wanted is AsyncMessageBus:
            shape = "an async def taking an AsyncEventStore"
        raise typer.BadParameter(
            f"{spec} returned {type(made).__name__}; a factory of {name} is {shape}",
            param_hint="--app",
        )
    article = "an" if name.startswith("A") else "a"
    raise typer.BadParameter(
        f"{spec} returned {type(made).__name__}, not {article} {name}", param_hint="--app"
    )


def app_codec(spec: str, url: str) -> Codec:
    """The codec of the application that `spec` builds over the store at `url`.

    It is the codec of the bus's SQL dead letters (`SQLDeadLetters(store,
    codec=...)`), which decodes as the application does, upcasters included;
    a bus keeping its letters in memory has none, and a plain codec is used.
    """
    factory = load_app_factory(spec)
    if is_async_factory(factory):

        async def build() -> Codec:
            async with opened_async_store(url) as store:
                letters = (await built_async_bus(spec, factory, store)).dead_letters
                return letters.codec if isinstance(letters, AsyncSQLDeadLetters) else Codec()

        return anyio.run(build)
    with opened_store(url) as store:
        sync_letters = built_bus(spec, factory, store).dead_letters
        return sync_letters.codec if isinstance(sync_letters, SQLDeadLetters) else Codec()


def decoding(modules: list[str] | None, app: str | None, url: str) -> Decoding:
    """How a command decodes payloads, from its `--import` and `--app` options.

    Given either, the command was asked to decode: what it cannot decode is
    shown as stored, and marked so, with the reason.
    """
    import_modules(modules)
    codec = Codec() if app is None else app_codec(app, url)
    return Decoding(codec, mark=bool(modules) or app is not None)


def import_modules(modules: list[str] | None) -> None:
    """Import the modules named on the command line, from the working directory as well."""
    if not modules:
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise typer.BadParameter(
                f"cannot import {name!r}: {exc}", param_hint="--import"
            ) from None


def require_postgres_extra() -> None:
    """Exit 1 with the install command when the PostgreSQL store cannot be imported."""
    try:
        importlib.import_module("tidings.store.postgres")
    except ModuleNotFoundError as exc:
        fail(str(exc))


@contextmanager
def opened_store(url: str, *, must_exist: bool = True) -> Iterator[EventStore]:
    """The store at `url`, closed at the end of the block.

    With `must_exist`, a SQLite file or a PostgreSQL schema without an
    event store is an error rather than an empty store made on the spot:
    reading a mistyped path or schema should not leave a new database
    behind, nor answer "no events" for a store that is elsewhere. A
    PostgreSQL server is connected to once first, within `CONNECT_TIMEOUT`:
    one that is down or does not answer ends the command at once with the
    reason, where the store's pool would wait its whole timeout, retrying
    and logging every attempt.
    """
    store = open_store(_checked_url(url, must_exist))
    try:
        yield store
    finally:
        store.close()


@asynccontextmanager
async def opened_async_store(
    url: str, *, must_exist: bool = True
) -> AsyncIterator[AsyncEventStore]:
    """The async store at `url`, for an async application, checked as `opened_store` does."""
    store = open_async_store(_checked_url(url, must_exist))
    try:
        yield store
    finally:
        await store.aclose()


def _checked_url(url: str, must_exist: bool) -> str:
    """`url` with a connect timeout, once its store is known to be there; else exit 1."""
    target = parse_store_url(url)
    if isinstance(target, PostgresURL):
        require_postgres_extra()
        timed = with_connect_timeout(target)
        refused = postgres_refusal(target, timed.conninfo, must_exist)
        if refused is not None:
            fail(refused)
        url = timed.url
    if isinstance(target, SQLiteURL) and Path(target.path).is_dir():
        fail(f"{target.path!r} is a directory, not an event store's database file")
    if must_exist and isinstance(target, SQLiteURL) and not Path(target.path).exists():
        fail(f"no event store at {target.path!r} (`tidings db init` creates one)")
    return url


def with_connect_timeout(target: PostgresURL) -> PostgresURL:
    """`target` with libpq's `connect_timeout` set, unless its URL or the environment sets it."""
    from psycopg.conninfo import conninfo_to_dict

    if "connect_timeout" in conninfo_to_dict(target.conninfo) or os.environ.get(
        "PGCONNECT_TIMEOUT"
    ):
        return target
    parts = urlsplit(target.url)
    setting = f"connect_timeout={CONNECT_TIMEOUT}"
    query = f"{parts.query}&{setting}" if parts.query else setting
    timed = parse_store_url(urlunsplit(parts._replace(query=query)))
    assert isinstance(timed, PostgresURL)
    return timed


def postgres_refusal(target: PostgresURL, conninfo: str, must_exist: bool) -> str | None:
    """Why `target`'s server, reached by `conninfo`, cannot serve a command; None if it can.

    One connection: libpq's reason when it fails, and with `must_exist` a
    schema that holds no event store.
    """
    import psycopg

    try:
        with psycopg.connect(conninfo) as connection:
            found = (
                not must_exist
                or connection.execute(
                    "SELECT 1 FROM information_schema.tables"
                    " WHERE table_schema = %s AND table_name = 'events'",
                    [target.schema],
                ).fetchone()
                is not None
            )
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot connect to the PostgreSQL store {target}: {reason}"
    if not found:
        return (
            f"no event store in schema {target.schema!r} of {target}"
            " (`tidings db init` creates one)"
        )
    return None
