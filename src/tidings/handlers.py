"""Registering handlers and resolving what they need, once, at start-up.

A `Router` collects handler functions; the message type comes from the first
parameter's annotation. When a bus is built, every other parameter is bound to
a dependency by name or by annotation (the `partial` a hand-written bootstrap
would apply, done for you), so a missing dependency fails at start-up rather
than at the first message.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Concatenate, Generic, Never, ParamSpec, Protocol, TypeVar, overload

from tidings.context import Dispatch
from tidings.errors import ConfigurationError
from tidings.messages import Command, Envelope, Event, Message, Query
from tidings.retry import Retry

__all__ = ["BoundHandler", "HandlerSpec", "PerCall", "Router", "bind_handlers", "require_async"]

M = TypeVar("M", bound=Message)
F = TypeVar("F", bound=Callable[Concatenate[Never, ...], Any])
"""A function taking at least one positional argument, whose type `message=` says."""
P = ParamSpec("P")
R = TypeVar("R")

_ONCE = Retry(attempts=1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PerCall(Generic[T]):
    """A dependency made afresh for every handler call.

    A unit of work holds one open transaction, so a bus that serves concurrent
    requests gets one per call: `dependencies={"uow": PerCall(lambda: MyUoW(store))}`.
    """

    factory: Callable[[], T]


class _Registers(Protocol[M]):
    """What `Router.handler(message=...)` returns: it registers a handler taking that message."""

    def __call__(self, fn: Callable[Concatenate[M, P], R], /) -> Callable[Concatenate[M, P], R]: ...


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler function registered for one message type."""

    fn: Callable[..., Any]
    message_type: type[Message]
    retry: Retry | None = None

    @property
    def name(self) -> str:
        return _name(self.fn)


class Router:
    """Collects handlers; a bus is built from one or more routers.

    ::

        router = Router()

        @router.handler
        def allocate(cmd: Allocate, uow: UnitOfWork) -> str: ...

        @router.handler(retry=Retry(attempts=5))
        def notify(event: OutOfStock, send_mail: Callable[..., None]) -> None: ...
    """

    def __init__(self) -> None:
        self.specs: list[HandlerSpec] = []

    @overload
    def handler(
        self, fn: Callable[Concatenate[M, P], R], /, *, retry: Retry | None = None
    ) -> Callable[Concatenate[M, P], R]: ...

    @overload
    def handler(self, fn: F, /, *, message: type[Message], retry: Retry | None = None) -> F: ...

    @overload
    def handler(
        self, fn: None = None, /, *, retry: Retry | None = None
    ) -> Callable[[Callable[Concatenate[M, P], R]], Callable[Concatenate[M, P], R]]: ...

    @overload
    def handler(
        self, fn: None = None, /, *, message: type[M], retry: Retry | None = None
    ) -> _Registers[M]: ...

    def handler(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        message: type[Message] | None = None,
        retry: Retry | None = None,
    ) -> Callable[..., Any]:
        """Register `fn` for the message type of its first parameter (or `message`).

        A union annotation registers it for each member. `retry` overrides the
        bus's retry policy for an event handler; on a command or query handler,
        which is not retried by default, it runs the handler again (its unit of
        work too) when it raises one of `retry.on`, such as `ConcurrencyError`.
        """

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            for message_type in _message_types(fn, message):
                self.specs.append(HandlerSpec(fn, message_type, retry))
            return fn

        return register if fn is None else register(fn)

    def include(self, other: Router) -> None:
        """Add every handler of `other` to this router."""
        self.specs.extend(other.specs)


@dataclass(slots=True)
class BoundHandler:
    """A handler with its dependencies resolved: call it with a message's dispatch or envelope."""

    spec: HandlerSpec
    kwargs: dict[str, Any]
    factories: dict[str, Callable[[], Any]]
    envelope_param: str | None
    retry: Retry
    name: str = field(init=False)
    is_async: bool = field(init=False)
    """Whether calling it returns an awaitable, known once so dispatch need not inspect results."""
    _per_call: bool = field(init=False)
    """Whether each call needs arguments of its own (fresh dependencies, the envelope)."""

    def __post_init__(self) -> None:
        self.name = self.spec.name
        fn = self.spec.fn
        self.is_async = inspect.iscoroutinefunction(fn) or (
            not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)
        )
        self._per_call = bool(self.factories) or self.envelope_param is not None

    def call(self, handled: Dispatch | Envelope[Message]) -> Any:
        """Call the handler; a dispatch builds its envelope only if the handler takes one."""
        if not self._per_call:
            return self.spec.fn(handled.message, **self.kwargs)
        kwargs = {**self.kwargs, **{name: make() for name, make in self.factories.items()}}
        if self.envelope_param is not None:
            envelope = handled.envelope if isinstance(handled, Dispatch) else handled
            kwargs[self.envelope_param] = envelope
        return self.spec.fn(handled.message, **kwargs)


@dataclass(slots=True)
class HandlerTable:
    """Bound handlers by kind, with lookups cached per concrete message type."""

    single: dict[type[Message], BoundHandler]
    events: list[BoundHandler]
    _single_cache: dict[type[Message], BoundHandler | None] = field(default_factory=dict)
    _event_cache: dict[type[Message], tuple[BoundHandler, ...]] = field(default_factory=dict)

    def for_single(self, message_type: type[Message]) -> BoundHandler | None:
        """The handler of a command or query: the nearest registration in its class hierarchy."""
        try:
            return self._single_cache[message_type]
        except KeyError:
            found = next((self.single[t] for t in message_type.__mro__ if t in self.single), None)
            self._single_cache[message_type] = found
            return found

    def for_event(self, event_type: type[Message]) -> tuple[BoundHandler, ...]:
        """Every handler of the event's class or of a base class, in registration order."""
        try:
            return self._event_cache[event_type]
        except KeyError:
            found = tuple(h for h in self.events if issubclass(event_type, h.spec.message_type))
            self._event_cache[event_type] = found
            return found

    def by_name(self, name: str) -> BoundHandler | None:
        return next((h for h in [*self.single.values(), *self.events] if h.name == name), None)


def bind_handlers(
    routers: Iterable[Router], dependencies: Mapping[str | type, Any], default_retry: Retry
) -> HandlerTable:
    """Resolve every handler's dependencies; `ConfigurationError` for anything wired wrongly."""
    single: dict[type[Message], BoundHandler] = {}
    events: list[BoundHandler] = []
    for router in routers:
        for spec in router.specs:
            bound = _bind(spec, dependencies, default_retry)
            if issubclass(spec.message_type, Event):
                events.append(bound)
            elif spec.message_type in single:
                kind = "command" if issubclass(spec.message_type, Command) else "query"
                raise ConfigurationError(
                    f"{kind} {spec.message_type.__qualname__} has two handlers: "
                    f"{single[spec.message_type].name} and {spec.name}; a {kind} has exactly one"
                )
            else:
                single[spec.message_type] = bound
    return HandlerTable(single, events)


def require_async(table: HandlerTable, dependency: object, why: str) -> None:
    """`ConfigurationError` for a plain function that takes `dependency`, which must be awaited.

    A plain function cannot await what an awaitable dependency returns, so the
    call would never run; this says so at start-up.
    """
    for handler in [*table.single.values(), *table.events]:
        if not handler.is_async and any(v is dependency for v in handler.kwargs.values()):
            raise ConfigurationError(f"{handler.name} is a plain function: {why}")


def _bind(
    spec: HandlerSpec, dependencies: Mapping[str | type, Any], default_retry: Retry
) -> BoundHandler:
    params = _parameters(spec.fn)
    kwargs: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    envelope_param: str | None = None
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise ConfigurationError(
                f"{spec.name}: parameter {param.name!r} is positional-only; "
                "dependencies are passed by name"
            )
        annotation = None if param.annotation is param.empty else param.annotation
        if param.name in dependencies:
            provided = dependencies[param.name]
        elif _is_envelope(annotation):
            envelope_param = param.name
            continue
        elif isinstance(annotation, type) and annotation in dependencies:
            provided = dependencies[annotation]
        elif param.default is param.empty:
            shown = (
                "" if annotation is None else f" ({getattr(annotation, '__name__', annotation)})"
            )
            twin = _twin(annotation, dependencies)
            hint = (
                f"this bus provides {twin.__name__}: annotate it {twin.__name__}"
                if twin is not None
                else f"pass it to the bus as dependencies={{{param.name!r}: ...}}"
            )
            raise ConfigurationError(
                f"{spec.name} needs {param.name!r}{shown}, which no dependency provides; {hint}"
            )
        else:
            continue
        if isinstance(provided, PerCall):
            factories[param.name] = provided.factory
        else:
            kwargs[param.name] = provided
    retry = spec.retry or (default_retry if issubclass(spec.message_type, Event) else _ONCE)
    return BoundHandler(spec, kwargs, factories, envelope_param, retry)


def _twin(annotation: object, dependencies: Mapping[str | type, object]) -> type | None:
    """The provided type that is `annotation`'s sync or async twin, such as `AsyncSend` for `Send`.

    A handler written for the other kind of bus asks for a type this bus does
    not have; naming the one it has says what to change.
    """
    if not isinstance(annotation, type):
        return None
    name = annotation.__name__
    twins = {f"Async{name}", name.removeprefix("Async")} - {name}
    return next(
        (t for t in dependencies if isinstance(t, type) and t.__name__ in twins),
        None,
    )


def _message_types(fn: Callable[..., Any], explicit: type[Message] | None) -> list[type[Message]]:
    if not callable(fn):
        raise ConfigurationError(f"{fn!r} is not callable")
    params = _parameters(fn)
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(
            f"{_name(fn)}: a handler takes the message as its first positional parameter"
        )
    if explicit is not None:
        candidates: list[Any] = [explicit]
    else:
        annotation = params[0].annotation
        if annotation is params[0].empty:
            raise ConfigurationError(
                f"{_name(fn)}: annotate the first parameter with the message type, "
                "or register with handler(message=...)"
            )
        is_union = (
            isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union
        )
        candidates = list(typing.get_args(annotation)) if is_union else [annotation]
    for candidate in candidates:
        if not (isinstance(candidate, type) and issubclass(candidate, Command | Event | Query)):
            raise ConfigurationError(
                f"{_name(fn)}: {candidate!r} is not a Command, Event or Query class"
            )
    return candidates


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn, eval_str=True).parameters.values())
    except NameError as exc:  # an annotation naming something not defined at module level
        raise ConfigurationError(f"{_name(fn)}: cannot resolve its annotations: {exc}") from exc


def _is_envelope(annotation: object) -> bool:
    return annotation is Envelope or typing.get_origin(annotation) is Envelope


def _name(fn: Callable[..., Any]) -> str:
    """`module.qualname` of a function, or of the class of a callable object.

    Dead letters and checkpoints keep this name, so it must be the same in
    every process: a handler of the module run as `python -m app.worker` is
    named for `app.worker`, as it is where that module is imported, not for
    `__main__`.
    """
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{_module_name(getattr(named, '__module__', None) or '?')}.{named.__qualname__}"


def _module_name(module: str) -> str:
    """The importable name of `module`: the one `python -m` ran for `__main__`, else the file's."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else module
