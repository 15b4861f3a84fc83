"""Bad arguments exit 2 and an unreachable store 1, each with one line on stderr; help lists all."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, invoke
from tests.services import postgres_dsn

COMMANDS = ["events", "tail", "streams", "trace", "serve", "db"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["events", "--store", "mysql://localhost/db"],
            "tidings events: error: Invalid value for '--store' (env var: 'TIDINGS_STORE'): "
            "unknown store URL scheme 'mysql' in 'mysql://localhost/db': "
            "use sqlite:///path, postgresql://..., memory: or a file path",
        ),
        (
            ["streams", "--store", "sqlite://host/events.db"],
            "tidings streams: error: Invalid value for '--store' (env var: 'TIDINGS_STORE'): "
            "malformed store URL 'sqlite://host/events.db': a SQLite URL has no host; "
            "write sqlite:///relative.db or sqlite:////absolute.db",
        ),
        (
            ["events", "--category", "Order-1"],
            "tidings events: error: Invalid value for --category: 'Order-1' is not a category: "
            "a category is the part of a stream name before its first dash, "
            "so it is not empty and has no dash",
        ),
        (
            ["tail", "--category", ""],
            "tidings tail: error: Invalid value for --category: '' is not a category: "
            "a category is the part of a stream name before its first dash, "
            "so it is not empty and has no dash",
        ),
        (
            ["streams", "-c", "a-b"],
            "tidings streams: error: Invalid value for --category: 'a-b' is not a category: "
            "a category is the part of a stream name before its first dash, "
            "so it is not empty and has no dash",
        ),
        (
            ["events", "--type", ""],
            "tidings events: error: Invalid value for --type: an event type name is not empty",
        ),
        (
            ["trace", "not-a-uuid"],
            "tidings trace: error: Invalid value for CORRELATION_ID: 'not-a-uuid' is not a UUID",
        ),
        (
            ["events", "--limit", "-1"],
            "tidings events: error: Invalid value for '--limit': "
            "Input should be greater than or equal to 1",
        ),
        (
            ["events", "--after", "-5"],
            "tidings events: error: Invalid value for '--after': "
            "Input should be greater than or equal to 0",
        ),
        (
            ["events", "--stream", "Order-1", "--category", "Order"],
            "tidings events: error: Invalid value for --category: "
            "not with --stream: one stream has one category",
        ),
        (
            ["events", "--import", "no.such.module"],
            "tidings events: error: Invalid value for --import: "
            "cannot import 'no.such.module': No module named 'no'",
        ),
        (["stream"], "tidings: error: No such command 'stream'. Did you mean 'streams'?"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr == reason + "\n"
    assert result.stdout == ""


def test_bad_store_url_from_the_environment_exits_2() -> None:
    result = invoke("streams", env={"TIDINGS_STORE": "memory:here"})
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "the memory store is just 'memory:'" in result.stderr


def test_a_missing_sqlite_file_is_not_created_by_reading(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    result = invoke("events", "--store", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"tidings: error: no event store at {str(path)!r} (`tidings db init` creates one)\n"
    )
    assert not path.exists()


@pytest.mark.parametrize("command", [["events"], ["streams"], ["trace", str(uuid.uuid4())]])
def test_a_postgres_schema_without_a_store_is_not_made_by_reading(command: list[str]) -> None:
    import psycopg

    dsn = postgres_dsn()
    schema = f"cli_typo_{uuid.uuid4().hex[:12]}"
    result = invoke(*command, "--store", f"{dsn}?schema={schema}")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"tidings: error: no event store in schema {schema!r} of ")
    assert result.stderr.endswith(" (`tidings db init` creates one)\n")
    assert result.stderr.count("\n") == 1
    with psycopg.connect(dsn) as connection:
        made = connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone()
    assert made is None, "reading made the schema"


@pytest.mark.parametrize("command", [["events"], ["db", "init"]])
def test_a_directory_is_no_sqlite_store(tmp_path: Path, command: list[str]) -> None:
    result = invoke(*command, "--store", f"{tmp_path}/")
    assert result.exit_code == 1, result.output
    directory = f"{tmp_path}/"
    assert result.stderr == (
        f"tidings: error: {directory!r} is a directory, not an event store's database file\n"
    )


@pytest.mark.parametrize("command", [["events"], ["streams"], ["trace", str(uuid.uuid4())]])
def test_an_unusable_store_exits_1_with_one_line(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not a SQLite database, just some bytes" * 100)
    result = invoke(*command, "--store", str(path))
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"tidings: error: SQLite database {str(path)!r}: file is not a database\n"
    )


def test_memory_store_reads_empty() -> None:
    result = invoke("events", "--json", "--store", "memory:")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_help_lists_every_command_on_one_line_each() -> None:
    result = invoke("--help", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        (line,) = [line for line in lines if line.strip("│ ").startswith(f"{command} ")]
        assert len(line.strip("│ ").split()) > 2, line
    for command in COMMANDS:
        assert invoke(command, "--help").exit_code == 0


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("tidings")
    result = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert f" {command} " in result.stdout
