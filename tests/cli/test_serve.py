"""`tidings serve`: an ASGI app run by uvicorn in a real process, reached over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.conftest import ROOT, invoke


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def test_serves_the_app_on_localhost_with_the_store_url(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path / 'events.db'}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings",
            "serve",
            "tests.cli.asgi_app:app",
            "--port",
            str(port),
            "--store",
            store,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={key: value for key, value in os.environ.items() if key != "TIDINGS_STORE"},
    )
    try:
        response = _get(f"http://127.0.0.1:{port}/", process)
        assert response.status_code == 200
        assert response.text == store
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_app_must_be_module_colon_attribute() -> None:
    result = invoke("serve", "tests.cli.asgi_app")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "tidings serve: error: Invalid value for APP: 'tests.cli.asgi_app' is not module:attribute"
    )


def test_an_app_that_cannot_be_imported_is_a_bad_argument() -> None:
    # Naming the variable here makes the runner restore it: serve sets it for the app.
    result = invoke("serve", "tests.cli.asgi_app:missing", env={"TIDINGS_STORE": "memory:"})
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "missing" in result.stderr
