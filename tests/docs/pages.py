"""Run the Python samples of one page, in order, in one namespace: `python pages.py PAGE`.

Run as a script in a process of its own, in the working directory it is
given, so the samples see the installed tidings and nothing of the repository
(no `examples`, no `tests`), and the classes they define live and die with the
process. Fences other than `python` are not run; `<!-- skip: next -->` skips one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

SYBIL = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])


def run(page: Path) -> int:
    """Run the page's samples; the number run."""
    document = SYBIL.parse(page)
    # The samples of a page are one module, as a reader pastes them; a sample that
    # runs a server until stopped keeps that under `if __name__ == "__main__":`.
    document.namespace["__name__"] = "docs_page"
    examples = list(document.examples())
    for example in examples:
        example.evaluate()
    return len(examples)


if __name__ == "__main__":
    ran = run(Path(sys.argv[1]))
    print(f"[{ran} samples ran]")
