"""Embedded Postgres for the state store when no server is configured.

Uses ``pgserver`` (a pip-installed PostgreSQL 16 server): the first caller initialises the data folder and
starts the server on a Unix socket inside it; later callers, in this or any other process, attach to the
running server. The server is left running when the caller exits (``cleanup_mode=None``) so that Airflow
tasks in separate processes share it; :func:`stop` shuts it down.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)
# pgserver logs every command line and, from an atexit hook, to streams that may be closed by then.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def ensure_running(data_dir: Path) -> str:
    """Start (or attach to) the embedded Postgres whose data lives in ``data_dir``.

    :param data_dir: the cluster's data folder; created and initialised on first use.
    :return: a libpq URI (``postgresql://postgres:@/postgres?host=<socket dir>``) for the ``postgres`` database.
    :raises RuntimeError: when the server cannot be initialised or started (pgserver's message is kept).
    """
    import pgserver

    data_dir = Path(data_dir).resolve()
    # pgserver serialises initialisation and start-up across processes with its own inter-process lock.
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(data_dir, cleanup_mode=None)
    except Exception as exc:
        raise RuntimeError(f"could not start the embedded Postgres in {data_dir}: {exc}") from exc
    uri: str = server.get_uri()
    log.info("Embedded Postgres running with data in %s", data_dir)
    return uri


def stop(data_dir: Path) -> None:
    """Stop the embedded Postgres of ``data_dir`` if it runs (a fast shutdown; data is kept)."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    data_dir = Path(data_dir).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return
    # pgserver runs the cluster as its own system user when started by root; pg_ctl must run as that user.
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    # pgserver caches one handle per folder and process; drop it so a later start really starts the server.
    from pgserver.postgres_server import PostgresServer

    handle = PostgresServer._instances.pop(data_dir, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
    log.info("Embedded Postgres in %s stopped", data_dir)


@contextmanager
def shared(data_dir: Path) -> Iterator[str]:
    """Use the embedded Postgres of ``data_dir`` together with other processes (``make demo`` beside ``make demo-ui``).

    Each user registers its pid under ``<data_dir>/../users``; on exit the last live user stops the server, so a
    process never stops a server another one still uses.

    :return: (yielded) the server's libpq URI, as :func:`ensure_running`.
    """
    users = Path(data_dir).resolve().parent / "users"
    users.mkdir(parents=True, exist_ok=True)
    me = users / str(os.getpid())
    me.touch()
    try:
        yield ensure_running(data_dir)
    finally:
        me.unlink(missing_ok=True)
        if not any(_alive(int(user.name)) for user in users.iterdir() if user.name.isdigit()):
            stop(data_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connection_kwargs(uri: str) -> dict[str, Any]:
    """Split a libpq URI into the fields of an Airflow ``Connection`` (host may be a socket folder).

    :param uri: ``postgresql://user:password@host:port/dbname?host=/socket/dir``.
    :return: dict with keys ``host``, ``port``, ``login``, ``password``, ``schema`` (the database name).
    """
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    return {
        "host": query.get("host", [parts.hostname or "localhost"])[0],
        "port": parts.port or 5432,
        "login": parts.username or "postgres",
        "password": parts.password or "",
        "schema": (parts.path or "/postgres").lstrip("/") or "postgres",
    }
