"""`tidings` without the `cli` extra: one line saying how to install it, and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs the console script's function in a process where the package cannot be imported,
# as in an environment installed without the extra.
WITHOUT = """
import sys
sys.modules[{package!r}] = None
sys.argv = ["tidings", "events"]
from tidings.__main__ import main
main()
"""


@pytest.mark.parametrize("package", ["typer", "rich"])
def test_without_the_cli_extra_the_command_says_how_to_install_it(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(package=package)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        'tidings: error: the command line needs the cli extra: pip install "tidings[cli]"'
        f" ({package} is not installed)\n"
    )


def test_with_the_extra_python_m_tidings_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tidings ")
