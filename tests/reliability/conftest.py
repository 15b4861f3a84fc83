"""Fixtures every reliability scenario shares: a durable store per backend and a printed seed.

A scenario is randomised; its seed is printed in the test's report (and taken
from `TIDINGS_SEED` when set), so a failure can be replayed exactly.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import postgres_dsn

SEED_ENV = "TIDINGS_SEED"


@pytest.fixture
def seed(record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]) -> int:
    """The scenario's seed: `TIDINGS_SEED` if set, else a fresh one, printed and recorded."""
    value = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    record_property("seed", value)
    with capsys.disabled():
        print(f"\n[{SEED_ENV}={value}]", end=" ")
    return value


@pytest.fixture
def rng(seed: int) -> random.Random:
    """A random generator seeded with the scenario's seed."""
    return random.Random(seed)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty durable store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    dsn = postgres_dsn()
    schema = f"reliability_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
