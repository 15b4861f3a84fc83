"""The built wheel, installed in a fresh virtual environment, runs the README and every doc sample.

The other sample tests use the repository's environment; this one proves
that what a user installs is enough: `uv build --wheel` into a temporary
directory, `uv venv`, `uv pip install "<wheel>[extras]"` (pinned to the
lock's versions, from uv's cache when it has them), then each page's
samples with that environment's python, in an empty directory, with
`PYTHONPATH` cleared. It also checks that the `tidings` command of a wheel
installed without the `cli` extra says how to get it. Without uv it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.test_samples import ROOT, assert_all_ran, page_id, python_pages, run_page

pytestmark = pytest.mark.wheel

# What the samples import beside tidings: the extras they use, httpx for the FastAPI
# guide's tests, sybil for the page runner.
EXTRAS = "web,postgres,sqlalchemy,nats,rabbitmq,redis,otel,console"
TOOLS = ["httpx", "sybil"]


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed: the wheel is built and installed with it")
    return found


def _run(*command: str, cwd: Path = ROOT, timeout: float = 120) -> str:
    done = subprocess.run(
        command,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _install(uv: str, python: Path, *requirements: str, constraints: Path) -> None:
    """Install from uv's cache if it has everything, else from the index."""
    command = [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints)]
    try:
        _run(*command, "--offline", *requirements)
    except AssertionError:
        _run(*command, *requirements)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The wheel, the lock's versions as constraints, and uv."""
    uv = _uv()
    folder = tmp_path_factory.mktemp("wheel")
    _run(uv, "build", "--wheel", "--quiet", "--out-dir", str(folder / "dist"))
    (wheel,) = (folder / "dist").glob("tidings-*.whl")
    constraints = folder / "constraints.txt"
    _run(
        uv, "export", "--frozen", "--all-extras", "--no-emit-project", "--no-hashes",
        "--quiet", "--output-file", str(constraints),
    )  # fmt: skip
    return wheel, constraints, uv


def _venv(uv: str, folder: Path) -> Path:
    _run(uv, "venv", "--quiet", "--python", "3.11", str(folder))
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def python(built: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment's python, with the wheel and the extras the samples need."""
    wheel, constraints, uv = built
    python = _venv(uv, tmp_path_factory.mktemp("venv") / "env")
    _install(uv, python, f"tidings[{EXTRAS}] @ {wheel.as_uri()}", *TOOLS, constraints=constraints)
    return python


def test_the_samples_import_the_installed_wheel(python: Path, tmp_path: Path) -> None:
    where = _run(str(python), "-c", "import tidings; print(tidings.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(python.parents[1])


@pytest.mark.parametrize("page", python_pages(), ids=page_id)
def test_the_samples_of_a_page_run_from_the_wheel(page: Path, python: Path, tmp_path: Path) -> None:
    assert_all_ran(page, run_page(page, tmp_path, str(python)))


def test_without_the_cli_extra_tidings_says_how_to_install_it(
    built: tuple[Path, Path, str], tmp_path: Path
) -> None:
    wheel, constraints, uv = built
    python = _venv(uv, tmp_path / "env")
    _install(uv, python, str(wheel), constraints=constraints)
    done = subprocess.run(
        [str(python.with_name("tidings")), "events"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        'tidings: error: the command line needs the cli extra: pip install "tidings[cli]"'
        " (typer is not installed)\n"
    )
