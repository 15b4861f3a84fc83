"""Every Python sample in README.md and docs/ runs, as written, in a fresh directory.

The samples of one page run in order in one namespace, as a reader would paste
them into one file: a later sample may use what an earlier one defined, and
nothing else is given to them. Each page runs in a process of its own
(`pages.py`), in an empty working directory, with the installed tidings and
nothing of the repository on its path: what runs here runs after
`pip install tidings`.

A page whose samples connect to PostgreSQL (they name a `postgresql://` URL)
runs only when the test server is reachable: without it, it skips with the
reason, and under CI=true it fails. Fences other than `python` (shell
sessions, output) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import POSTGRES_DSN, postgres_dsn

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("pages.py")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SAMPLE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_pages() -> list[Path]:
    """The pages with Python samples."""
    return [page for page in PAGES if SAMPLE.search(page.read_text())]


def run_page(page: Path, cwd: Path, python: str = sys.executable) -> str:
    """Run the page's samples in `cwd` with `python`; what they printed. Fails if one fails."""
    if any("postgresql://" in sample for sample in SAMPLE.findall(page.read_text())):
        postgres_dsn()  # skips without a server, fails under CI
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_STORE", "PYTHONPATH")}
    env["TIDINGS_TEST_POSTGRES"] = POSTGRES_DSN
    done = subprocess.run(
        [python, str(RUNNER), str(page)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(
            f"a sample of {page.relative_to(ROOT)} failed:\n{done.stdout}\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    return done.stdout


def assert_all_ran(page: Path, out: str) -> None:
    """`out`, what `run_page` printed, ends with the count of the page's samples."""
    count = len(SAMPLE.findall(page.read_text()))
    assert out.endswith(f"[{count} samples ran]\n"), out


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", python_pages(), ids=page_id)
def test_the_samples_of_a_page_run_as_written(page: Path, tmp_path: Path) -> None:
    assert_all_ran(page, run_page(page, tmp_path))


def _session_answers(page: Path, command: str) -> list[str]:
    """What the page's shell session shows `command` printing, up to its `[exit N]` line."""
    lines = page.read_text().splitlines()
    start = lines.index(f"$ {command}") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("[exit"))
    return [line.rstrip() for line in lines[start : end + 1]]


def test_the_cli_session_shows_what_the_seed_sample_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tidings.cli import app

    page = ROOT / "docs" / "cli.md"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDINGS_STORE", raising=False)
    runner = CliRunner()

    def run(command: str) -> list[str]:
        result = runner.invoke(app, command.split()[1:], env={"COLUMNS": "250"})
        output = [line.rstrip() for line in result.output.splitlines()]
        return [*output, f"[exit {result.exit_code}]"]

    assert run("tidings db init") == _session_answers(page, "tidings db init")
    run_page(page, tmp_path)
    assert run("tidings streams") == _session_answers(page, "tidings streams")
    assert run("tidings db migrate") == _session_answers(page, "tidings db migrate")


def test_the_readme_quickstart_shares_no_unit_of_work() -> None:
    (quickstart,) = re.findall(
        r"## Quickstart\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert "PerCall(lambda: UnitOfWork(store))" in quickstart
