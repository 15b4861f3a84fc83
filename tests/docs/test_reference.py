"""The site builds with `mkdocs build --strict`, and its reference names every public name.

A docstring the reference cannot render, a `:::` naming nothing, or a link
to a page that is not there is a warning, and `--strict` makes it an error:
so a rename that leaves the reference behind fails here. mkdocs is in the
`docs` dependency group (`make install` syncs it); without it the build is
skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tidings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is in the docs group: uv sync --group docs")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is missing")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    assert (tmp_path / "reference" / "bus" / "index.html").exists()


def _covered(name: str, rendered: set[str]) -> bool:
    """Whether `tidings.name` is on a page: by itself, or as a member of a rendered module."""
    if f"tidings.{name}" in rendered:
        return True
    for module_name in rendered:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        exported = getattr(module, "__all__", None)
        if exported is not None and name in exported:  # a package's exported names
            return True
        # A module shows what it defines, its __all__ or not: every name without a `_`.
        if getattr(getattr(tidings, name), "__module__", None) == module_name:
            return True
    return False


def test_the_reference_names_every_public_name() -> None:
    """Each name of `tidings.__all__` is on a page, by itself or in a rendered module."""
    rendered = {
        match
        for page in REFERENCE.glob("*.md")
        for match in re.findall(r"^::: (tidings[\w.]*)$", page.read_text(), re.M)
    }
    for name in rendered:
        if name not in sys.modules:
            with contextlib.suppress(ImportError):  # a name, or a module behind a missing extra
                importlib.import_module(name)
    missing = sorted(name for name in tidings.__all__ if not _covered(name, rendered))
    assert not missing, f"not in docs/reference/*.md (add ::: tidings.NAME): {missing}"
