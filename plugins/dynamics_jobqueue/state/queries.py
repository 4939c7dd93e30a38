"""SQL of the migration runner (:mod:`dynamics_jobqueue.state.migrations`): the bookkeeping table
``dynamics.schema_migrations`` it creates itself, before any migration. Plain ``%s`` parameters."""

from __future__ import annotations

# Held to the end of the transaction: concurrent callers migrate one after another.
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(%s)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS dynamics"
CREATE_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS dynamics.schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
MIGRATION_APPLIED = "SELECT 1 FROM dynamics.schema_migrations WHERE version = %s"
RECORD_MIGRATION = "INSERT INTO dynamics.schema_migrations (version, name) VALUES (%s, %s)"
