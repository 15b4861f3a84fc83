"""`tidings --version` prints the installed distribution's version, the one pyproject.toml gives."""

from __future__ import annotations

import tomllib

from tests.cli.conftest import ROOT, invoke, run_tidings


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def test_version_option_prints_the_version_and_exits_0() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"tidings {_project_version()}\n"
    assert result.stderr == ""


def test_python_m_tidings_prints_the_same_version() -> None:
    result = run_tidings("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tidings {_project_version()}\n"
