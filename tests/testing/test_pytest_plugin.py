"""The pytest plugin, run as a project using tidings runs it: pytest in a directory of its own.

Nothing loads the plugin by hand: pytest finds it through the `pytest11` entry
point of the installed tidings, in a process of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.services import postgres_dsn

pytestmark = pytest.mark.timeout(300)

APP = """
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tidings import (
    AsyncMemoryStore, AsyncMessageBus, AsyncUnitOfWork, Command, Envelope, Event, EventSourced,
    MemoryStore, MessageBus, Router, UnitOfWork, applies,
)


@dataclass(frozen=True)
class Note(Command):
    text: str


@dataclass(frozen=True)
class Noted(Event, type_name="plugin_app.Noted"):
    text: str


class Pad(EventSourced):
    @applies
    def _noted(self, event: Noted) -> None:
        pass


router = Router()


@router.handler
def note(cmd: Note, uow: UnitOfWork) -> str:
    with uow:
        pad = Pad("p1")
        pad.record(Noted(cmd.text))
        uow.repository(Pad).add(pad)
        uow.commit()
    return "noted"


async_router = Router()


@async_router.handler
async def note_async(cmd: Note, uow: AsyncUnitOfWork) -> str:
    async with uow:
        pad = Pad("p1")
        pad.record(Noted(cmd.text))
        await uow.repository(Pad).add(pad)
        await uow.commit()
    return "noted"


@pytest.fixture
def tidings_bootstrap() -> Callable[[MemoryStore], MessageBus]:
    return lambda store: MessageBus(router, dependencies={"uow": UnitOfWork(store)})


@pytest.fixture
def tidings_async_bootstrap() -> Callable[[AsyncMemoryStore], AsyncMessageBus]:
    return lambda store: AsyncMessageBus(async_router, dependencies={"uow": AsyncUnitOfWork(store)})
"""

STORE_TESTS = """
import pytest

from tidings import Codec, Envelope, EventStore
from conftest import Noted


def test_append_and_read(tidings_store: EventStore, tidings_backend: str) -> None:
    codec = Codec()
    tidings_store.append("Pad-1", [codec.new_event(Envelope.new(Noted(tidings_backend)))])
    (record,) = tidings_store.read_stream("Pad-1")
    assert codec.decode(record.type, record.schema_version, record.data) == Noted(tidings_backend)
    print("ran on", tidings_backend, type(tidings_store).__name__)


@pytest.mark.anyio
async def test_append_and_read_async(tidings_async_store, tidings_backend: str) -> None:
    codec = Codec()
    await tidings_async_store.append("Pad-1", [codec.new_event(Envelope.new(Noted("a")))])
    (record,) = await tidings_async_store.read_stream("Pad-1")
    assert record.stream == "Pad-1"
    print("ran async on", tidings_backend, type(tidings_async_store).__name__)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with the application in its conftest, and no PostgreSQL named by default."""
    monkeypatch.delenv("TIDINGS_TEST_POSTGRES", raising=False)
    pytester.makeconftest(APP)
    return pytester


def test_the_store_fixtures_run_on_every_backend_a_database_is_given_for(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_store=STORE_TESTS)
    result = project.runpytest_subprocess("-s", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*test_append_and_read?memory?*ran on memory MemoryStore*",
            "*test_append_and_read?sqlite?*ran on sqlite SQLiteStore*",
            "*ran async on memory AsyncMemoryStore*",
            "*ran async on sqlite AsyncSQLiteStore*",
        ]
    )
    # Without a database named, the PostgreSQL runs skip with a one-line reason.
    result = project.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    reason = "no PostgreSQL database: pass --tidings-postgres=DSN or set TIDINGS_TEST_POSTGRES"
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] test_store.py:*: {reason}"] * 2)


def test_the_postgres_backend_gets_a_schema_of_its_own_dropped_afterwards(
    project: pytest.Pytester,
) -> None:
    dsn = postgres_dsn()
    project.makepyfile(test_store=STORE_TESTS)
    project.makepyfile(
        test_schema="""
        import pytest

        from tidings import Codec, Envelope
        from conftest import Noted

        @pytest.mark.tidings_backends("postgres")
        def test_schema(tidings_store) -> None:
            tidings_store.append("Pad-1", [Codec().new_event(Envelope.new(Noted("pg")))])
            print("schema", tidings_store.schema, "end")
        """
    )
    result = project.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", f"--tidings-postgres={dsn}"
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*ran on postgres PostgresStore*", "*ran async on postgres*"])
    (schema,) = re.findall(r"schema (tidings_test_[0-9a-f]+) end", result.stdout.str())
    import psycopg

    with psycopg.connect(dsn) as connection:
        left = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert left == (0,)


def test_a_database_named_but_not_reachable_fails_at_once_with_the_reason(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_store=STORE_TESTS)
    result = project.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tidings-postgres=postgresql://postgres@127.0.0.1:1/test",
        "-k",
        "postgres",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*the PostgreSQL test database is not reachable: connection failed:*refused*"]
    )
    assert result.duration < 60


def test_a_marker_picks_the_backends_of_one_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.tidings_backends("sqlite")
        def test_on_sqlite_only(tidings_store, tidings_backend) -> None:
            assert tidings_backend == "sqlite"

        @pytest.mark.tidings_backends("oracle")
        def test_on_nothing_known(tidings_store) -> None: ...
        """
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.stdout.fnmatch_lines(
        ["*unknown tidings backend 'oracle'; the backends are memory, sqlite, postgres*"]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED  # the module is not collected
    assert "Traceback" not in result.stdout.str()


def test_the_scenario_fixtures_build_the_bus_with_the_projects_bootstrap(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_scenario="""
        import pytest

        from conftest import Note, Noted


        def test_when_then(tidings_scenario) -> None:
            outcome = tidings_scenario.when(Note("hi")).then(Noted("hi"))
            assert outcome.result == "noted"


        @pytest.mark.anyio
        async def test_when_then_async(tidings_async_scenario) -> None:
            await tidings_async_scenario.when(Note("hi")).then(Noted("hi"))
        """
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_scenario_without_a_bootstrap_says_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_scenario="""
        def test_needs_a_bootstrap(tidings_scenario) -> None: ...
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*tidings_scenario builds the bus with a tidings_bootstrap fixture: define one in*"]
    )


def test_the_plugins_fixtures_leave_a_projects_own_store_fixture_alone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.fixture
        def store() -> str:
            return "mine"

        def test_own_store(store) -> None:
            assert store == "mine"
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    listed = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    ours = {line.split()[0] for line in listed.outlines if line.startswith("tidings_")}
    assert ours == {
        "tidings_async_bootstrap",
        "tidings_async_scenario",
        "tidings_async_store",
        "tidings_backend",
        "tidings_bootstrap",
        "tidings_scenario",
        "tidings_store",
    }


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "testing.md"
# The guide's files: its application, a `python` sample the docs tests run too, and the
# project's conftest and tests, `py` samples only pytest can run, as it does here.
FILE_SAMPLE = re.compile(r"^```py(?:thon)?\n# (?P<name>\w+\.py)\n(?P<code>.*?)^```", re.S | re.M)


def test_the_testing_guides_project_passes_as_the_guide_says(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's files (its application, conftest and tests) written out and run by pytest."""
    monkeypatch.delenv("TIDINGS_TEST_POSTGRES", raising=False)
    files = {m["name"]: m["code"] for m in FILE_SAMPLE.finditer(GUIDE.read_text())}
    assert set(files) == {"members.py", "conftest.py", "test_members.py", "test_async_members.py"}
    for name, code in files.items():
        (pytester.path / name).write_text(code)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, skipped=2)
    summary = re.search(
        r"```text\n\$ pytest -q\n(?P<dots>.*)\n(?P<counts>.*)\n```", GUIDE.read_text()
    )
    assert summary is not None
    result.stdout.fnmatch_lines([summary["dots"] + "*", f"{summary['counts']}*"])
    skipped = re.search(r"```text\n(?P<line>SKIPPED .*)\n```", GUIDE.read_text())
    assert skipped is not None
    reasons = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider", "test_members.py")
    reasons.stdout.fnmatch_lines([skipped["line"].replace("[", "[[]")])
