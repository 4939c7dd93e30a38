"""Hook to the state store: the project's own Postgres database.

The state store keeps what the reference system keeps in its own tables: couplings (CRM Integration Record),
watermarks, integration synch. job log and errors, job queue entries and log entries, mailbox records. It is
reached through the Airflow connection ``dynamics_state`` (conn type ``postgres``, e.g.
``AIRFLOW_CONN_DYNAMICS_STATE=postgresql://user:pass@host:5432/dynamics``). A missing connection is an error
that names it. Only where the ``embedded_state_store`` setting is on (``make demo``, ``make test``, the
benchmarks: ``AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE=True``) does a missing connection start an embedded
Postgres (pgserver) under ``DYNAMICS_STATE_DIR`` instead, so a fresh checkout works with nothing installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from airflow.exceptions import AirflowNotFoundException
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import Connection

from dynamics_jobqueue import settings
from dynamics_jobqueue.paths import state_dir
from dynamics_jobqueue.state import embedded, migrations

log = logging.getLogger(__name__)


class StateStoreHook(PostgresHook):
    """Postgres hook for the state store (with an embedded server as the opt-in fallback of development).

    :param state_conn_id: Airflow connection id of the state store (conn type ``postgres``). When no connection
        of the default id exists and the ``embedded_state_store`` setting is on, an embedded Postgres under
        ``DYNAMICS_STATE_DIR/pgdata`` is used.
    :param migrate: apply pending schema migrations on the first connection (default ``True``).
    """

    conn_name_attr = "state_conn_id"
    default_conn_name = "dynamics_state"
    conn_type = "postgres"
    hook_name = "Dynamics job queue state store"

    def __init__(self, *args: Any, migrate: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._migrate = migrate
        self._migrated = False

    @classmethod
    def embedded_connection(cls) -> Connection:
        """Start (or attach to) the embedded Postgres and describe it as an Airflow connection.

        :raises RuntimeError: when the embedded server cannot start.
        """
        uri = embedded.ensure_running(state_dir() / "pgdata")
        return Connection(conn_id=cls.default_conn_name, conn_type="postgres", **embedded.connection_kwargs(uri))

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """The Airflow connection ``conn_id``; the embedded server for a missing default id, when opted in.

        :raises AirflowNotFoundException: when the connection is not configured (and, for the default id, the
            embedded state store is not enabled); the message names the connection and how to set it.
        """
        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException as exc:
            if conn_id == cls.default_conn_name and settings.embedded_state_store():
                log.info("No Airflow connection %r: using the embedded Postgres (embedded_state_store)", conn_id)
                return cls.embedded_connection()
            raise AirflowNotFoundException(missing_connection_message(conn_id)) from exc

    def get_conn(self) -> psycopg.Connection:
        """Open a psycopg 3 connection; the first one of this hook applies pending migrations.

        :raises psycopg.OperationalError: when the server cannot be reached.
        """
        conn = cast("psycopg.Connection", super().get_conn())
        if self._migrate and not self._migrated:
            migrations.apply(conn)
            self._migrated = True
        return conn

    def migrate(self) -> list[int]:
        """Apply pending migrations now.

        :return: the migration versions applied (empty when up to date).
        """
        with self.get_conn() as conn:
            return migrations.apply(conn)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor]:
        """Yield a cursor inside one transaction: committed on normal exit, rolled back on an exception.

        The connection is closed afterwards. Rows come back as tuples.
        """
        conn = self.get_conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        finally:
            conn.close()


def missing_connection_message(conn_id: str) -> str:
    """What to do when the state store's connection ``conn_id`` is not configured."""
    return (
        f"The state store connection {conn_id!r} is not defined. Create it (conn type postgres, any PostgreSQL 13+)"
        f" in Admin > Connections, a secrets backend or the environment, e.g. AIRFLOW_CONN_{conn_id.upper()}="
        "postgresql://user:password@host:5432/dynamics_state. Development only: "
        f"{settings.env_name('embedded_state_store')}=True starts an embedded Postgres instead."
    )
