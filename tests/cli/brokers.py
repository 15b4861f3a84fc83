"""Brokers of a test's own, on free ports, to kill and start again: Redis and NATS JetStream.

The shared brokers on the standard ports serve other tests at the same
time, so a test that takes its broker away starts one of its own. Without
the server's binary the test skips (fails under CI).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.services import unavailable

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnBroker:
    """A broker process on `port`: `kill` it (SIGKILL), `start` it again on the same port."""

    def __init__(self, name: str, command: list[str], port: int, url: str) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.url = url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.command}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def own_redis(tmp_path: Path) -> OwnBroker:
    """Redis on a free port, keeping nothing on disk: a restart starts it empty."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "no redis-server binary on PATH")
    try:
        import redis  # noqa: F401
    except ModuleNotFoundError as exc:
        unavailable("Redis", str(exc))
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    command += ["no", "--dir", str(tmp_path)]
    return OwnBroker("redis-server", command, port, f"redis://127.0.0.1:{port}/0")


def own_nats(tmp_path: Path) -> OwnBroker:
    """NATS with JetStream on a free port, streams on disk in `tmp_path`: a restart keeps them."""
    if not Path(NATS_SERVER).exists():
        unavailable("nats-server", f"no binary at {NATS_SERVER}")
    try:
        import nats  # noqa: F401
    except ModuleNotFoundError as exc:
        unavailable("NATS", str(exc))
    port = free_port()
    store = tmp_path / "jetstream"
    store.mkdir()
    command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    return OwnBroker("nats-server", command, port, f"nats://127.0.0.1:{port}")
