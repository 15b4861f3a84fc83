"""`tidings tail`: a real process following `$all`, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import IO, Any

from tests.cli.conftest import ROOT, Store
from tests.cli.sample import OrderConfirmed, OrderPlaced, PaymentRequested
from tidings.messages import Envelope

_WAIT = 20.0


class Tail:
    """A running `tidings tail` whose output lines arrive on queues."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.started = ""  # the line that says where following began
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, lines), daemon=True)
            for stream, lines in ((process.stdout, self.stdout), (process.stderr, self.stderr))
        ]
        for pump in self._pumps:
            pump.start()

    def line(self) -> str:
        return self.stdout.get(timeout=_WAIT)

    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.line()))

    def stop(self) -> int:
        """Ctrl-C, as a user would; the exit status, once all output is read."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=_WAIT)
        for pump in self._pumps:
            pump.join(timeout=_WAIT)
        return code

    @staticmethod
    def rest(lines: queue.Queue[str]) -> list[str]:
        """The lines not read yet."""
        found = []
        while not lines.empty():
            found.append(lines.get())
        return found


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@contextmanager
def tail(store: Store, *args: str) -> Iterator[Tail]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tidings", "tail", "--interval", "0.05", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TIDINGS_STORE": store.url},
    )
    running = Tail(process)
    try:
        ready = running.stderr.get(timeout=_WAIT)
        assert ready.startswith("following from position"), ready
        running.started = ready.strip()
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_follows_new_events_from_the_head_and_stops_cleanly(store: Store) -> None:
    # More than one page of history, all skipped.
    store.append("Order-1", *[Envelope.new(OrderPlaced("1", Decimal(n))) for n in range(700)])
    with tail(store, "--json") as running:
        confirmed = Envelope.new(OrderConfirmed("1"))
        store.append("Order-1", confirmed)
        first = running.event()
        store.append("Payment-1", confirmed.caused(PaymentRequested("1")))
        second = running.event()

        assert running.stop() == 0
        assert running.rest(running.stdout) == []
        assert running.rest(running.stderr) == []
    assert (first["stream"], first["version"], first["type"]) == (
        "Order-1",
        701,
        "cli.OrderConfirmed",
    )
    assert first["event_id"] == str(confirmed.message_id)
    assert (second["stream"], second["causation_id"]) == ("Payment-1", str(confirmed.message_id))
    assert second["position"] > first["position"]


def test_from_the_head_with_a_filter_prints_only_what_commits_later(store: Store) -> None:
    store.append("Order-1", Envelope.new(OrderPlaced("1", Decimal(1))))
    # The head is past the last Order event: following starts there all the same.
    store.append("Payment-1", *[Envelope.new(PaymentRequested(str(n))) for n in range(600)])
    head = store.open()
    try:
        # On a shared PostgreSQL server others' open transactions may hold the readable head
        # back for a while: wait until it reaches this test's last commit, as tail will see it.
        deadline = time.monotonic() + 60
        while (position := head.head_position()) < head.watermark().last_position:
            assert time.monotonic() < deadline, "the head never reached the last commit"
            time.sleep(0.01)
    finally:
        head.close()
    with tail(store, "--json", "--category", "Order") as running:
        store.append("Payment-2", Envelope.new(PaymentRequested("2")))
        store.append("Order-2", Envelope.new(OrderPlaced("2", Decimal(2))))
        new = running.event()

        assert running.stop() == 0
        assert running.rest(running.stdout) == []
        assert running.rest(running.stderr) == []
    assert running.started == f"following from position {position}"
    assert (new["stream"], new["version"]) == ("Order-2", 1)
    assert new["position"] > position


def test_from_start_prints_the_log_then_follows_with_filters(store: Store) -> None:
    store.append("Order-1", Envelope.new(OrderPlaced("1", Decimal(1))))
    store.append("Payment-1", Envelope.new(PaymentRequested("1")))
    with tail(store, "--json", "--from-start", "--category", "Order") as running:
        old = running.event()
        store.append("Payment-2", Envelope.new(PaymentRequested("2")))
        store.append("Order-2", Envelope.new(OrderPlaced("2", Decimal(2))))
        new = running.event()

        assert running.stop() == 0
        assert running.rest(running.stdout) == []
        assert running.rest(running.stderr) == []
    assert [old["stream"], new["stream"]] == ["Order-1", "Order-2"]
    assert new["data"] == {"order_id": "2", "total": "2"}


def test_lines_for_people_name_position_stream_type_and_data(store: Store) -> None:
    store.append("Order-1", Envelope.new(OrderPlaced("1", Decimal("2.50"))))
    with tail(store, "--from-start", "--type", "cli.OrderPlaced") as running:
        first = running.line()
        store.append("Order-2", Envelope.new(OrderConfirmed("2")))
        store.append("Order-3", Envelope.new(OrderPlaced("3", Decimal(3))))
        second = running.line()
        assert running.stop() == 0
    assert first.split()[1:3] == ["Order-1@1", "cli.OrderPlaced"]
    assert first.rstrip().endswith('{"order_id":"1","total":"2.50"}')
    assert second.split()[1:3] == ["Order-3@1", "cli.OrderPlaced"]
