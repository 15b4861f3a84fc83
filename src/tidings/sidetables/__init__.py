"""Tables kept beside the log, in the event store's own database, written in its transactions.

Dead letters and scheduled messages live here, so that they commit or roll
back with the events they go with: a table named `tidings_<name>` in the
SQLite file, `<schema>.<name>` in the PostgreSQL store's schema.
"""

from tidings.sidetables.dialect import SideDialect, dialect_of, find_dialect

__all__ = ["SideDialect", "dialect_of", "find_dialect"]
