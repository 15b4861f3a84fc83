"""Fakes for the callable dependencies of handlers: mailers, notifiers, publishers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "Recorder"]


@dataclass(frozen=True, slots=True)
class Call:
    """One call a `Recorder` received."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Recorder:
    """A fake for a callable dependency: records every call, returns `returns`, or fails.

    ::

        mail = Recorder()
        bus = bootstrap(send_mail=mail)
        ...
        assert mail.calls[0].kwargs["subject"] == "Out of stock: LAMP"

    With `fail_with`, calls raise that exception: the first `failures` calls,
    or every call when `failures` is None. Failed calls are recorded too, so
    the number of attempts an event handler made shows in `calls`.
    """

    def __init__(
        self,
        *,
        returns: Any = None,
        fail_with: BaseException | None = None,
        failures: int | None = None,
    ) -> None:
        if failures is not None and fail_with is None:
            raise ValueError("failures counts calls that raise fail_with; give fail_with too")
        self.returns = returns
        self.fail_with = fail_with
        self.failures = failures
        self.calls: list[Call] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(args, kwargs))
        if self.fail_with is not None and (
            self.failures is None or len(self.calls) <= self.failures
        ):
            # A fresh traceback each time, or the shared exception would grow one per call.
            raise self.fail_with.with_traceback(None)
        return self.returns
