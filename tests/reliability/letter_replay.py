"""Replays every dead letter of the `replay` handler, in a process of its own, to be killed.

    python -m tests.reliability.letter_replay STORE_URL

Progress is printed every 500 letters (`replayed N`), then `done`.
"""

from __future__ import annotations

import sys

from tests.reliability.replay_app import HANDLER, replay_bus
from tidings.dead_letters import SQLDeadLetters
from tidings.store.urls import open_store


def main(url: str) -> None:
    store = open_store(url)
    try:
        bus = replay_bus(store)
        letters = bus.dead_letters
        assert isinstance(letters, SQLDeadLetters)
        replayed = 0
        while page := letters.list(handler=HANDLER, limit=500):
            for letter in page:
                bus.retry_dead_letter(letter.id)
                replayed += 1
            print(f"replayed {replayed}", flush=True)
        print("done", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1])
