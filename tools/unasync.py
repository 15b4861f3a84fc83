"""Generate the blocking modules from their asyncio sources, so the logic is written once.

Every `_async/` folder under `src/tidings` has a `_sync/` twin written by this
script. Besides dropping `async`/`await` and the `Async` prefix of names, a line
ending in `# sync: <code>` is replaced by `<code>` (an empty `<code>` drops the
line). `--check` fails when a generated file is out of date, as CI runs it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = sorted((ROOT / "src" / "tidings").rglob("_async"))

HEADER = "# Generated from {source} by tools/unasync.py: edit that file, then run `make unasync`.\n"

WORDS = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "asynccontextmanager": "contextmanager",
    "_async": "_sync",
    "aclose": "close",
}

DIRECTIVE = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# sync:(?P<replacement>.*)$")
ASYNC_NAME = re.compile(r"\bAsync(?=[A-Z])")
KEYWORDS = re.compile(r"\basync (?=def|with|for)|\bawait ")
# An awaitable of X is plain X in blocking code (simple X only, no nested brackets).
AWAITABLE = re.compile(r"\bAwaitable\[([\w.]+)\]")
WORD = re.compile(r"\b(" + "|".join(map(re.escape, WORDS)) + r")\b")


def convert(text: str, source: str) -> str:
    lines = [HEADER.format(source=source)]
    for line in text.splitlines(keepends=True):
        match = DIRECTIVE.match(line.rstrip("\n"))
        if match:
            replacement = match["replacement"].strip()
            if replacement:
                lines.append(f"{match['indent']}{replacement}\n")
            continue
        line = KEYWORDS.sub("", line)
        line = ASYNC_NAME.sub("", line)
        line = AWAITABLE.sub(r"\1", line)
        line = WORD.sub(lambda m: WORDS[m.group(1)], line)
        lines.append(line)
    return "".join(lines)


def main(check: bool) -> int:
    stale: list[Path] = []
    for source_dir in SOURCE_DIRS:
        target_dir = source_dir.with_name("_sync")
        target_dir.mkdir(exist_ok=True)
        expected = {
            target_dir / source.name: convert(source.read_text(), str(source.relative_to(ROOT)))
            for source in sorted(source_dir.glob("*.py"))
        }
        for target in target_dir.glob("*.py"):
            if target not in expected:
                stale.append(target)
                if not check:
                    target.unlink()
        for target, text in expected.items():
            if not target.exists() or target.read_text() != text:
                stale.append(target)
                if not check:
                    target.write_text(text)
    if check and stale:
        names = ", ".join(str(path.relative_to(ROOT)) for path in stale)
        print(f"generated sync code is out of date ({names}); run `make unasync`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
