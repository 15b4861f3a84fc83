"""The console's screenshots in the docs, docs/images/console-*.png: regenerate them with
`python -m tests.console.screenshots`.

They are taken over a small shop's log in a SQLite file of their own, with
the system's headless chromium, at a width that keeps the files small.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tests.console.serving import serving
from tests.console.shop import OrderCount, Picky, seed, seed_request
from tidings.cli import app
from tidings.console import console_app
from tidings.dead_letters import SQLDeadLetters
from tidings.projections import ProjectionRunner
from tidings.store.urls import open_store

if TYPE_CHECKING:
    from playwright.sync_api import Browser

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def take(browser: Browser, into: Path) -> list[Path]:
    """Screenshots of the main pages, as PNG files in `into`; the files written."""
    from typer.testing import CliRunner

    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'shop.db'}"
        assert CliRunner().invoke(app, ["db", "init", "--store", url]).exit_code == 0
        with open_store(url) as store:
            seeded = seed(store)
            Picky.broken = True
            ProjectionRunner(store, [Picky()], retry_waits=False).rebuild("picky")
            ProjectionRunner(store, [OrderCount()]).rebuild("order_count")
            [letter] = ProjectionRunner(store, [Picky()]).letters_of("picky")
            # Paths in the traceback as the repository names them, not this machine.
            letters = SQLDeadLetters(store)
            letters.remove(letter.id)
            root = f"{IMAGES.parents[1]}/"
            letter = replace(letter, traceback=letter.traceback.replace(root, ""))
            letters.add(letter)
            request = seed_request(store)
            pages = {
                "all": "/",
                "event": f"/events/{seeded.paid}",
                "projections": "/projections",
                "dead-letter": f"/dead-letters/{letter.id}",
                "graph": f"/events/{request[1]}",
            }
            written = []
            with serving(console_app(store, [OrderCount(), Picky()])) as base:
                context = browser.new_context(viewport={"width": 1000, "height": 560})
                page = context.new_page()
                for name, path in pages.items():
                    page.goto(base + path)
                    target = into / f"console-{name}.png"
                    if name == "graph":
                        page.locator("figure.graph").screenshot(path=str(target))
                    else:
                        page.screenshot(path=str(target), full_page=name == "event")
                    written.append(target)
                context.close()
    return written


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests.console.browser import CHROMIUM

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        for path in take(browser, IMAGES):
            print(path.relative_to(IMAGES.parents[1]), path.stat().st_size, "bytes")
        browser.close()


if __name__ == "__main__":
    main()
