"""Running mypy --strict on a snippet of code that uses tidings, as a user's checker would."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api


def mypy_errors(source: str, tmp_path: Path) -> list[str]:
    """The `error:` lines mypy --strict reports for `source`, a module using tidings."""
    module = tmp_path / "snippet.py"
    module.write_text(textwrap.dedent(source))
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(Path(__file__).parents[2] / ".mypy_cache"),
            str(module),
        ]
    )
    assert not stderr, stderr
    return [line for line in stdout.splitlines() if ": error: " in line]
