import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_quickstart_runs_as_written_and_prints_what_it_says() -> None:
    (code,) = re.findall(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "70"
    assert lines[1] == "acc-1 has only 70"
    assert lines[2] == "['acc-1: -30']"
    assert lines[3:] == ["1 Account-acc-1 1 AccountOpened", "2 Account-acc-1 2 MoneyWithdrawn"]
