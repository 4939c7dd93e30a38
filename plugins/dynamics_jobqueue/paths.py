"""Where the project's data files and local state live.

The package ships code; SQL migrations and table mappings are data kept under ``include/``. In a checkout (and
in the docker-compose image, which mounts ``include/`` next to ``dags/`` and ``plugins/``) that folder is found
relative to this file; ``DYNAMICS_INCLUDE_DIR`` points elsewhere when it is not.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def include_dir() -> Path:
    """Return the ``include/`` folder (``DYNAMICS_INCLUDE_DIR`` or ``<repo>/include``)."""
    return Path(os.environ.get("DYNAMICS_INCLUDE_DIR") or _REPO_ROOT / "include")


def migrations_dir() -> Path:
    """Return the folder of versioned state-store migrations (``include/sql/migrations``)."""
    return include_dir() / "sql" / "migrations"


def state_dir() -> Path:
    """Return the folder for local state: ``DYNAMICS_STATE_DIR`` or ``<repo>/.state``.

    The embedded Postgres keeps its data under ``<state_dir>/pgdata``.
    """
    return Path(os.environ.get("DYNAMICS_STATE_DIR") or _REPO_ROOT / ".state")
