"""The Flask app of Architecture Patterns with Python, launched on this machine's PostgreSQL.

The book's code is not part of this repository: `BOOK_APP_ENV` names the
checkout (the directory holding `src/allocation`, from
https://github.com/cosmicpython/code, branch master) and `BOOK_SCHEMA_ENV`
the PostgreSQL schema its tables live in. Run by gunicorn:

    gunicorn benchmarks.book_app:app          # the book's `flask_app.app`, loaded on access
    python -m benchmarks.book_app create      # its tables: start_mappers + create_all

The book pins SQLAlchemy 1.x; this environment has 2.x. Three shims, applied
before the book's modules load, keep its code unchanged and its queries the
same: the classical `mapper()` is `registry.map_imperatively`; a textual SQL
string given to `Session.execute` is wrapped in `text()` and its rows come
back as mappings (so the read view's `dict(row)` works); and the e-mail
adapter, which connects to an SMTP server when the app starts, is replaced by
one that sends nothing (no workload here runs out of stock). Its Redis
publisher is the book's own, on 127.0.0.1:6379.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, cast

import sqlalchemy.orm
from sqlalchemy import CursorResult, text

BOOK_APP_ENV = "TIDINGS_BENCH_BOOK_APP"
BOOK_SCHEMA_ENV = "TIDINGS_BENCH_BOOK_SCHEMA"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _load_book() -> None:
    checkout = Path(os.environ[BOOK_APP_ENV])
    schema = os.environ[BOOK_SCHEMA_ENV]
    sys.path.insert(0, str(checkout / "src"))
    # Redis on this machine's default port: the book's config takes it for a non-localhost host.
    os.environ.setdefault("REDIS_HOST", "127.0.0.1")

    mappers = sqlalchemy.orm.registry()
    sqlalchemy.orm.mapper = mappers.map_imperatively  # type: ignore[attr-defined,assignment]

    execute = sqlalchemy.orm.Session.execute

    def execute_text(self: sqlalchemy.orm.Session, statement: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(statement, str):
            result = cast(CursorResult[Any], execute(self, text(statement), *args, **kw))
            return result.mappings() if result.returns_rows else result
        return execute(self, statement, *args, **kw)

    sqlalchemy.orm.Session.execute = execute_text  # type: ignore[method-assign]

    uri = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    import_module("allocation.config").get_postgres_uri = lambda: uri  # type: ignore[attr-defined]

    class NoMail:
        def send(self, destination: str, message: str) -> None:
            pass

    import_module("allocation.bootstrap").EmailNotifications = NoMail  # type: ignore[attr-defined]


def create_tables() -> None:
    """The book's tables in the schema, as its tests make them: start_mappers, create_all."""
    orm = import_module("allocation.adapters.orm")
    unit_of_work = import_module("allocation.service_layer.unit_of_work")
    orm.metadata.create_all(unit_of_work.DEFAULT_SESSION_FACTORY.kw["bind"])


def __getattr__(name: str) -> Any:
    """`app`, the book's Flask app, loaded when gunicorn asks for it (not when imported)."""
    if name != "app":
        raise AttributeError(name)
    _load_book()
    return import_module("allocation.entrypoints.flask_app").app


if __name__ == "__main__":
    if sys.argv[1:] != ["create"]:
        raise SystemExit("usage: python -m benchmarks.book_app create")
    _load_book()
    create_tables()
