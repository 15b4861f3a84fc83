"""`tidings console`: refusing to listen off 127.0.0.1 without a token, and serving a store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.console.conftest import store_url
from tests.console.pages import csrf_of
from tidings.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["console", *args], env=env)
    return result.exit_code, result.output


def test_another_interface_needs_a_token(tmp_path: Path) -> None:
    for url in store_url("sqlite", tmp_path):
        code, output = _invoke(url, "--host", "0.0.0.0", env={"TIDINGS_CONSOLE_TOKEN": ""})
        assert code == 2
        assert output.strip().count("\n") == 0
        assert "listening on 0.0.0.0 needs an access token" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://nowhere"], "STORE_URL"),
        (["memory:", "--port", "0"], "--port"),
        (["memory:", "--projections", "nodots"], "is not MODULE:ATTRIBUTE"),
        (["memory:", "--app", "tests.console.shop:nothing"], "has no function"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    code, output = _invoke(*args)
    assert code == 2, output
    assert output.strip().count("\n") == 0
    assert message in output


def test_a_missing_sqlite_file_is_not_made(tmp_path: Path) -> None:
    code, output = _invoke(f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 1
    assert "no event store at" in output
    assert not (tmp_path / "none.db").exists()


def test_serves_the_store_read_only(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in store_url("sqlite", tmp_path):
        command = [sys.executable, "-m", "tidings", "console", url, "--port", str(port)]
        env = {**os.environ, "TIDINGS_CONSOLE_TOKEN": ""}
        server = subprocess.Popen([*command, "--read-only"], cwd=ROOT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    page = httpx.get(f"{base}/", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the console never answered"
                    assert server.poll() is None, "the console exited"
                    time.sleep(0.1)
            assert page.status_code == 200
            assert "read-only" in page.text
            refused = httpx.post(f"{base}/projections/any/pause", data={"csrf": "x"})
            assert refused.status_code == 403
            with pytest.raises(AssertionError):
                csrf_of(httpx.get(f"{base}/projections"))
        finally:
            server.terminate()
            server.wait(10)
