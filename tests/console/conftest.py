"""Fixtures of the console tests: a real ``airflow api-server`` with the plugin, on a seeded state store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from console_support import Console, api_server, free_port, sandbox_records, seed_state


@pytest.fixture(scope="module")
def console(
    postgres_server: Any, airflow_env: Any, sandbox_process: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """The api-server with the console plugin on a freshly seeded state store, for one test module."""
    from airflow.sdk import Connection

    from dynamics_jobqueue.hooks.state import StateStoreHook

    dbname = f"console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    state_conn = postgres_server.airflow_connection(dbname)
    store = StateStoreHook(connection=Connection(conn_id="dynamics_state", **state_conn))
    store.migrate()
    conninfo = postgres_server.conninfo(dbname)
    seed = seed_state(store, conninfo)
    with pytest.MonkeyPatch.context() as env:
        for name, value in sandbox_process.environment().items():
            env.setenv(name, value)
        sandbox_records(seed)

    work = tmp_path_factory.mktemp("console")
    closed_port = free_port()  # nothing listens: a mailbox run records a connection error with its fix
    # What the dag-processor does in a deployment: the DAGs the console triggers are known to Airflow.
    reserialized = airflow_env.run("dags", "reserialize")
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]
    extra = {
        "AIRFLOW_CONN_CONSOLE_TEST_IMAP": json.dumps(
            {
                "conn_type": "dynamics_mail",
                "host": "127.0.0.1",
                "login": "sales",
                "password": "secret",
                "extra": {"imap_port": closed_port, "smtp_port": closed_port, "timeout": 5},
            }
        ),
    }
    try:
        with api_server(airflow_env, sandbox_process, state_conn, work, extra) as (base_url, log_file):
            yield Console(base_url, conninfo, store, seed, log_file, state_conn)
    finally:
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
