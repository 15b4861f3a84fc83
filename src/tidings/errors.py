"""The exceptions tidings raises, so callers can catch precisely what they can handle."""

from __future__ import annotations

__all__ = [
    "AggregateNotFound",
    "CascadeLimitExceeded",
    "CommitOutcomeUnknown",
    "ConcurrencyError",
    "ConfigurationError",
    "DomainError",
    "EventDecodeError",
    "EventIdConflict",
    "InvalidType",
    "InvalidValue",
    "NoHandler",
    "StoreUnavailable",
    "StreamNotFound",
    "TidingsError",
    "UnknownEventType",
    "WrongExpectedVersion",
]


class TidingsError(Exception):
    """Base of every error tidings raises."""


class DomainError(Exception):
    """Base for a domain's own errors: an invalid transition or a broken rule."""


class ConfigurationError(TidingsError):
    """Handlers or dependencies wired wrongly; raised at start-up, never at the first message."""


class NoHandler(TidingsError, LookupError):
    """A command or query was sent that no handler is registered for."""

    def __init__(self, message_type: type) -> None:
        self.message_type = message_type
        super().__init__(f"no handler is registered for {message_type.__qualname__}")


class CascadeLimitExceeded(TidingsError):
    """One request led to more messages than the bus allows; most likely a cycle of events."""


class ConcurrencyError(TidingsError):
    """Someone else changed the data first; reload and retry."""


class WrongExpectedVersion(ConcurrencyError):
    """An append expected a stream version that the stream no longer has."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected {expected}, found {shown}")


class EventIdConflict(TidingsError):
    """An append repeats some event ids already stored, but not as the same batch."""


class StreamNotFound(TidingsError, LookupError):
    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} does not exist")


class AggregateNotFound(TidingsError, LookupError):
    def __init__(self, kind: str, aggregate_id: str) -> None:
        self.kind = kind
        self.aggregate_id = aggregate_id
        super().__init__(f"{kind} {aggregate_id!r} not found")


class DeadLetterNotFound(TidingsError, KeyError):
    """No dead letter has this id (it was retried, dropped, or never was)."""

    def __init__(self, letter_id: object) -> None:
        self.letter_id = letter_id
        super().__init__(f"no dead letter {letter_id}")

    def __str__(self) -> str:  # KeyError would quote the message as a key
        return str(self.args[0])


class DeadLetterNotRetryable(TidingsError, LookupError):
    """A dead letter this process cannot retry: its handler or its event's class is not loaded."""


class TransactionClosed(TidingsError, RuntimeError):
    """A store transaction was used after it committed or rolled back.

    A transaction the database aborted after an error is rolled back, so
    using it again raises this too: open a new one.
    """


class UnitOfWorkStateError(TidingsError, RuntimeError):
    """A unit of work used outside its `with` block, or opened twice at once."""


class InvalidValue(TidingsError, ValueError):
    """A value tidings cannot take, such as a stream name with a NUL; nothing was written."""


class InvalidType(TidingsError, TypeError):
    """An argument of a type tidings does not take, such as `str` event data; nothing written."""


class StoreUnavailable(TidingsError):
    """The store cannot be reached; nothing of the interrupted write was kept.

    Where a write's connection was lost while it committed, the store finds
    out whether the commit happened before it raises this; when it cannot,
    it raises `CommitOutcomeUnknown` instead.
    """


class CommitOutcomeUnknown(TidingsError):
    """A write's connection was lost while it committed, and whether it did cannot be known.

    The write was kept entirely or not at all. Retrying it with the same
    event ids is safe: an append of a batch already stored stores nothing
    and returns where the batch landed. Retrying with new ids may store the
    events twice. Not a `StoreUnavailable`, which promises nothing was kept.
    """


class EventDecodeError(TidingsError):
    """A stored event cannot be turned back into its class."""

    def __init__(self, type_name: str, schema_version: int, reason: str) -> None:
        self.type_name = type_name
        self.schema_version = schema_version
        self.reason = reason
        self.stream: str | None = None
        self.version: int | None = None
        self.position: int | None = None
        super().__init__(self._describe())

    def locate(self, stream: str, version: int, position: int) -> None:
        """Name where in the log the undecodable event sits."""
        self.stream, self.version, self.position = stream, version, position
        self.args = (self._describe(),)

    def _describe(self) -> str:
        where = ""
        if self.stream is not None:
            where = f" at {self.stream!r} version {self.version} (position {self.position})"
        return (
            f"cannot decode event {self.type_name!r} v{self.schema_version}{where}: {self.reason}"
        )


class UnknownEventType(EventDecodeError, LookupError):
    """No loaded event class is stored under this type name."""

    def __init__(self, type_name: str) -> None:
        super().__init__(type_name, 0, "no event class is registered under this name")

    def _describe(self) -> str:
        where = "" if self.stream is None else f" at {self.stream!r} version {self.version}"
        return f"unknown event type {self.type_name!r}{where}: no event class has this type name"
