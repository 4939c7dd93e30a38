"""Where the project's data files and local state live.

The package ships its code and the state store's SQL migrations (package data, :func:`migrations_dir`). The table
mappings are deployment data kept under ``include/`` next to ``dags/``: in a checkout that folder is found
relative to this file; the setting ``include_dir`` (:mod:`dynamics_jobqueue.settings`) points elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from dynamics_jobqueue import settings


def include_dir() -> Path:
    """Return the ``include/`` folder (setting ``include_dir``, default ``<repo>/include``)."""
    return settings.include_dir()


def migrations_dir() -> Path:
    """Return the folder of versioned state-store migrations: ``dynamics_jobqueue/sql/migrations`` (package data)."""
    return Path(__file__).resolve().parent / "sql" / "migrations"


def state_dir() -> Path:
    """Return the folder for local state (setting ``state_dir``, default ``<repo>/.state``).

    The embedded Postgres keeps its data under ``<state_dir>/pgdata``.
    """
    return settings.state_dir()
