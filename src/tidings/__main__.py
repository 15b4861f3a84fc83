"""`python -m tidings` and the `tidings` console script: the command line, from the `cli` extra.

The library needs neither typer nor rich; the command line does. Without
them, `tidings` says in one line how to install them and exits with 2.
"""

import sys

_CLI_PACKAGES = frozenset({"typer", "rich", "click"})


def main() -> None:
    """Run the `tidings` command, or say how to install it."""
    try:
        from tidings.cli import main as run
    except ModuleNotFoundError as missing:
        package = (missing.name or "").partition(".")[0]
        if package not in _CLI_PACKAGES:
            raise
        print(
            f'tidings: error: the command line needs the cli extra: pip install "tidings[cli]"'
            f" ({package} is not installed)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    run()


if __name__ == "__main__":
    main()
