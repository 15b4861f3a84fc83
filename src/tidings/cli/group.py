"""The command group every `tidings` command runs in: errors as one line, exit codes kept."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from tidings.errors import CommitOutcomeUnknown, ConfigurationError, StoreUnavailable

__all__ = ["TidingsGroup", "fail"]


class TidingsGroup(TyperGroup):
    """Reports bad arguments (exit 2) and an unreachable store (exit 1) in one line on stderr.

    The usual rendering of a usage error is a framed panel over several lines;
    a one-line reason reads better in scripts and logs. Any other exception is
    a fault of tidings itself and keeps its traceback.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as exc:  # usage errors and bad parameters among them
            context = getattr(exc, "ctx", None)
            _exit(exc.format_message(), exc.exit_code, getattr(context, "command_path", None))
        except (StoreUnavailable, CommitOutcomeUnknown, ConfigurationError) as exc:
            _exit(str(exc), 1, None)
        except typer.Abort:
            _exit("aborted", 1, None)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def fail(message: str) -> NoReturn:
    """End the command with status 1 and `message` as its one line on stderr."""
    typer.echo(f"tidings: error: {message}", err=True)
    raise typer.Exit(1)


def _exit(message: str, code: int, where: str | None) -> NoReturn:
    """Print `message` on one line of stderr and exit with `code`."""
    line = " ".join(message.split())
    if line:  # empty when the help text was printed in its place
        typer.echo(f"{where or 'tidings'}: error: {line}", err=True)
    sys.exit(code)
