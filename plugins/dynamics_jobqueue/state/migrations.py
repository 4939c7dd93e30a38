"""Versioned schema migrations of the state store.

Migrations are plain SQL files ``dynamics_jobqueue/sql/migrations/NNNN_name.sql`` (package data) applied in the
order of their number, each in its own transaction together with its row in ``dynamics.schema_migrations``.
A transaction-level advisory lock serialises concurrent callers (two Airflow tasks starting at once), so every
migration is applied exactly once; re-running is a no-op.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dynamics_jobqueue.paths import migrations_dir
from dynamics_jobqueue.state import queries as q

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every process that migrates this database.
_MIGRATION_LOCK_KEY = 7_210_455_031

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (its number), ``name`` and the SQL text."""

    version: int
    name: str
    sql: str


def discover(folder: Path | None = None) -> list[Migration]:
    """Read the migration files of ``folder`` (default the package's ``sql/migrations``), sorted by version.

    :raises ValueError: when a file name does not follow ``NNNN_name.sql`` or two files share a number.
    """
    folder = folder or migrations_dir()
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files are named NNNN_name.sql (lower case)")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"{path}: migration number {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def apply(conn: psycopg.Connection, folder: Path | None = None) -> list[int]:
    """Apply every migration not yet recorded in ``dynamics.schema_migrations``.

    :param conn: an open psycopg 3 connection (its autocommit setting is left as found).
    :param folder: the migrations folder; default the package's ``sql/migrations``.
    :return: the versions applied by this call, in order (empty when the schema was up to date).
    :raises psycopg.Error: when a migration fails; that migration is rolled back, earlier ones stay.
    """
    applied: list[int] = []
    for migration in discover(folder):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(q.LOCK_MIGRATIONS, (_MIGRATION_LOCK_KEY,))
            cur.execute(q.CREATE_SCHEMA)
            cur.execute(q.CREATE_SCHEMA_MIGRATIONS)
            cur.execute(q.MIGRATION_APPLIED, (migration.version,))
            if cur.fetchone():
                continue
            log.info("Applying state-store migration %04d_%s", migration.version, migration.name)
            cur.execute(migration.sql.encode())
            cur.execute(q.RECORD_MIGRATION, (migration.version, migration.name))
            applied.append(migration.version)
    return applied
