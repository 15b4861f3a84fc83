"""How side tables are named and typed in SQLite and in a PostgreSQL schema."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SideDialect", "dialect_of", "find_dialect"]


@dataclass(frozen=True, slots=True)
class SideDialect:
    """Table names, column types and placeholders of one store's database.

    Statements are written with `?` placeholders and `{blob}`, `{real}` and
    `{bigint}` column types; `sql` renders them for the database.
    """

    postgres: bool
    schema: str | None = None

    def table(self, name: str) -> str:
        if self.schema is None:
            return f"tidings_{name}"
        return f"{_quoted(self.schema)}.{_quoted(name)}"

    def sql(self, template: str, **tables: str) -> str:
        names = {key: self.table(value) for key, value in tables.items()}
        types = (
            {"blob": "bytea", "real": "double precision", "bigint": "bigint"}
            if self.postgres
            else {"blob": "BLOB", "real": "REAL", "bigint": "INTEGER"}
        )
        return self.placeholders(template.format(**names, **types))

    def placeholders(self, text: str) -> str:
        """`text` with its `?` placeholders as the database's driver wants them."""
        return text.replace("?", "%s") if self.postgres else text

    @property
    def creation_lock(self) -> str | None:
        """A statement that keeps concurrent creators of the tables apart (PostgreSQL only)."""
        if not self.postgres:
            return None
        return "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def find_dialect(store: object) -> SideDialect | None:
    """The dialect of a SQLite or PostgreSQL event store; None for a store without tables.

    Told apart by their attributes, so that PostgreSQL's driver, an optional
    extra, need not be imported to recognise a SQLite store.
    """
    schema = getattr(store, "schema", None)
    if isinstance(schema, str) and hasattr(store, "notify_channel"):
        return SideDialect(postgres=True, schema=schema)
    if isinstance(getattr(store, "path", None), str):
        return SideDialect(postgres=False)
    return None


def dialect_of(store: object) -> SideDialect:
    """The dialect of a SQLite or PostgreSQL event store; other stores have no tables."""
    dialect = find_dialect(store)
    if dialect is None:
        raise TypeError(
            f"{type(store).__name__} keeps no tables beside its log; "
            "use a SQLite or PostgreSQL store"
        )
    return dialect


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
