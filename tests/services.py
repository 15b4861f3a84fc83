"""Reaching the real services tests need: skip with a reason on a laptop, fail under CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

POSTGRES_DSN = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, where every service must be up."""
    message = f"{service} not reachable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def postgres_dsn() -> str:
    """The DSN of a reachable PostgreSQL test database."""
    try:
        import psycopg
    except ImportError as exc:  # the postgres extra is not installed
        unavailable("PostgreSQL", f"psycopg is not installed ({exc})")
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", f"{POSTGRES_DSN}: {str(exc).strip().splitlines()[0]}")
    return POSTGRES_DSN
