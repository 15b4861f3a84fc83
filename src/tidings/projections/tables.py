"""The SQL of the projections table: checkpoint, state and lease of each projection.

One row per projection in the store's own database (`tidings_projections` in
SQLite, `<schema>.projections` in PostgreSQL), so that a checkpoint commits
in the same transaction as a read model's writes, and so that the CLI and
runners in other processes see the same state. The statements are written
with `?` placeholders; PostgreSQL's are converted to `%s`. A projection's
dead letters are kept with the bus's (`tidings.dead_letters`); the table
`projection_dead_letters` that older versions made is no longer used.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tidings.sidetables import SideDialect

__all__ = ["Dialect", "ProjectionRow"]

_COLUMNS = (
    "name, position, state, error, failed_position, owner, lease_until, heartbeat, inline,"
    " token, partitions"
)

# Columns added since the table was first made, with their types: added when missing.
ADDED_COLUMNS = (
    ("heartbeat", "{real}"),
    ("inline", "{bigint} NOT NULL DEFAULT 0"),
    ("token", "{bigint} NOT NULL DEFAULT 0"),
    ("partitions", "{bigint} NOT NULL DEFAULT 1"),
)


@dataclass(slots=True)
class ProjectionRow:
    """A projection's row as stored."""

    name: str
    position: int
    state: str
    error: str | None
    failed_position: int | None
    owner: str | None
    lease_until: float | None
    heartbeat: float | None = None
    """When the owner last said it was alive (seconds since the epoch), kept once it is gone."""
    inline: bool = False
    """Applied by the unit of work's commits (an inline projection), not by a runner."""
    token: int = 0
    """The fencing token: raised each time another runner takes the lease over."""
    partitions: int = 1
    """How many partitions the projection was split into when this row was made."""

    @staticmethod
    def new(name: str, partitions: int = 1) -> ProjectionRow:
        return ProjectionRow(name, 0, "running", None, None, None, None, partitions=partitions)

    @staticmethod
    def of(row: tuple[Any, ...]) -> ProjectionRow:
        name, position, state, error, failed, owner, until, heartbeat, inline, token, parts = row
        return ProjectionRow(
            name,
            position,
            state,
            error,
            failed,
            owner,
            until,
            heartbeat,
            bool(inline),
            int(token),
            int(parts),
        )


@dataclass(frozen=True, slots=True)
class Dialect:
    """The statements for one database: SQLite, or PostgreSQL in one schema."""

    side: SideDialect
    projections: str
    members: str
    events: str
    create: tuple[str, ...]
    visible: str  # a condition on `position` that keeps only readable events

    @staticmethod
    def of(side: SideDialect) -> Dialect:
        projections = side.table("projections")
        visible = "1 = 1"
        if side.postgres:
            from tidings.store.postgres_sql import EVENTS_PER_TRANSACTION

            visible = (
                "position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                f" * {EVENTS_PER_TRANSACTION}"
            )
        return Dialect(
            side=side,
            projections=projections,
            members=side.table("projection_members"),
            events=side.table("events"),
            create=(
                side.sql(_CREATE, projections="projections"),
                side.sql(_CREATE_MEMBERS, members="projection_members"),
            ),
            visible=visible,
        )

    @property
    def postgres(self) -> bool:
        return self.side.postgres

    def statement(self, text: str) -> str:
        return self.side.placeholders(
            text.format(p=self.projections, m=self.members, e=self.events, v=self.visible)
        )

    def columns(self) -> tuple[str, list[Any]]:
        """A query of the projections table's column names (no rows while it does not exist)."""
        if self.side.postgres:
            return (
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = 'projections'",
                [self.side.schema],
            )
        return f"SELECT name FROM pragma_table_info('{self.projections}')", []

    def add_column(self, column: str, kind: str) -> str:
        return f"ALTER TABLE {self.projections} ADD COLUMN {column} " + self.side.sql(kind)

    def pending(
        self, categories: Collection[str] | None, types: Collection[str] | None
    ) -> tuple[str, list[Any]]:
        """Count the readable events after a position (the first parameter), filtered."""
        text = "SELECT count(*) FROM {e} WHERE position > ? AND {v}"
        params: list[Any] = []
        for column, values in (("category", categories), ("type", types)):
            if values is not None:
                values = sorted(values)
                if not values:
                    return "SELECT 0 WHERE ? IS NOT NULL", params
                text += f" AND {column} IN ({', '.join('?' * len(values))})"
                params.extend(values)
        return self.statement(text), params


_CREATE = """
    CREATE TABLE IF NOT EXISTS {projections} (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'running',
        error TEXT,
        failed_position BIGINT,
        owner TEXT,
        lease_until {real},
        heartbeat {real},
        inline {bigint} NOT NULL DEFAULT 0,
        token {bigint} NOT NULL DEFAULT 0,
        partitions {bigint} NOT NULL DEFAULT 1
    )
"""

# One row per runner running a partitioned projection, its heartbeat: how runners count
# each other to share the partitions out.
_CREATE_MEMBERS = """
    CREATE TABLE IF NOT EXISTS {members} (
        projection TEXT NOT NULL,
        owner TEXT NOT NULL,
        heartbeat {real} NOT NULL,
        PRIMARY KEY (projection, owner)
    )
"""


SELECT = f"SELECT {_COLUMNS} FROM {{p}} WHERE name = ?"
SELECT_ALL = f"SELECT {_COLUMNS} FROM {{p}} ORDER BY name"
# A projection's row and its partitions' (named `<name>#<index>`): the parameters are the
# name, then the length and text of the prefix `<name>#`.
SELECT_OF = f"SELECT {_COLUMNS} FROM {{p}} WHERE name = ? OR substr(name, 1, ?) = ? ORDER BY name"
DELETE_OF = "DELETE FROM {p} WHERE name = ? OR substr(name, 1, ?) = ?"
INSERT = "INSERT INTO {p} (name, partitions) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
MARK_INLINE = "UPDATE {p} SET inline = 1 WHERE name = ? AND inline = 0"
# Every write by the owner is also its heartbeat: the first parameter is the time now.
# A new owner raises the fencing token (SET reads the row as it was before the update).
CLAIM = (
    "UPDATE {p} SET heartbeat = ?,"
    " token = token + CASE WHEN owner IS NULL OR owner <> ? THEN 1 ELSE 0 END,"
    " owner = ?, lease_until = ?"
    " WHERE name = ? AND (owner IS NULL OR owner = ? OR lease_until < ?)"
)
# Taken by the holder of the projection's advisory lock: the previous owner is gone.
TAKE = (
    "UPDATE {p} SET heartbeat = ?,"
    " token = token + CASE WHEN owner IS NULL OR owner <> ? THEN 1 ELSE 0 END,"
    " owner = ?, lease_until = ? WHERE name = ?"
)
# The last heartbeat stays: it says when the runner was last seen.
RELEASE = "UPDATE {p} SET owner = NULL, lease_until = NULL WHERE name = ? AND owner = ?"
RENEW = "UPDATE {p} SET heartbeat = ?, lease_until = ? WHERE name = ? AND owner = ? AND token = ?"
# Fenced: only the owner under the token it claimed, from the position it read, in a state
# that processes events.
SAVE = (
    "UPDATE {p} SET heartbeat = ?, position = ?, lease_until = ?,"
    " state = CASE WHEN ? THEN 'running' ELSE state END"
    " WHERE name = ? AND owner = ? AND token = ? AND position = ?"
    " AND state IN ('running', 'rebuilding')"
)
PARK = (
    "UPDATE {p} SET state = 'parked', error = ?, failed_position = ?"
    " WHERE name = ? AND owner = ? AND token = ? AND position = ?"
)
SET_STATE = "UPDATE {p} SET state = ?, error = NULL, failed_position = NULL WHERE name = ?"
RESTART = (
    "UPDATE {p} SET position = 0, state = 'rebuilding', error = NULL, failed_position = NULL"
    " WHERE name = ?"
)
MOVE = (
    "UPDATE {p} SET position = ?, state = 'running', error = NULL, failed_position = NULL"
    " WHERE name = ?"
)
# Only while parked on that very event: the parked event is dropped and the projection runs on.
SKIP = (
    "UPDATE {p} SET position = failed_position, state = 'running', error = NULL,"
    " failed_position = NULL WHERE name = ? AND state = 'parked' AND failed_position = ?"
)
DELETE = "DELETE FROM {p} WHERE name = ?"
# The row locked until the transaction ends, as it stands once the others holding it are done.
HOLD = "UPDATE {p} SET position = position WHERE name = ? RETURNING position"
# An inline projection's commit: its row locked first, moved on only while it runs.
ADVANCE = (
    "UPDATE {p} SET position = CASE WHEN state = 'running' AND position < ? THEN ? ELSE position"
    " END WHERE name = ? RETURNING state, error"
)
HEAD = "SELECT coalesce(max(position), 0) FROM {e} WHERE {v}"
BEAT = (
    "INSERT INTO {m} (projection, owner, heartbeat) VALUES (?, ?, ?)"
    " ON CONFLICT (projection, owner) DO UPDATE SET heartbeat = excluded.heartbeat"
)
# The members heard of since the time given, and the others forgotten.
MEMBERS = "SELECT count(*) FROM {m} WHERE projection = ? AND heartbeat >= ?"
FORGET_MEMBERS = "DELETE FROM {m} WHERE projection = ? AND heartbeat < ?"
LEAVE = "DELETE FROM {m} WHERE projection = ? AND owner = ?"
