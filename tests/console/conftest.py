"""Fixtures of the console tests: a real ``airflow api-server`` with the plugin, on a seeded state store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from console_support import PASSWORDS, REPO, Console, free_port, sandbox_records, seed_state


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
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = free_port()
    closed_port = free_port()  # nothing listens: a mailbox run records a connection error with its fix
    # What the dag-processor does in a deployment: the DAGs the console triggers are known to Airflow.
    reserialized = airflow_env.run("dags", "reserialize")
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]
    env = {
        **airflow_env.env,
        **sandbox_process.environment(),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,operator:user,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW_CONN_DYNAMICS_STATE": json.dumps(state_conn),
        "AIRFLOW_CONN_CONSOLE_TEST_IMAP": json.dumps(
            {
                "conn_type": "dynamics_mail",
                "host": "127.0.0.1",
                "login": "sales",
                "password": "secret",
                "extra": {"imap_port": closed_port, "smtp_port": closed_port, "timeout": 5},
            }
        ),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    log_file = work / "api-server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_file.read_text()[-5000:]
            try:
                if requests.get(f"{base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_file.read_text()[-5000:]
            time.sleep(0.5)
        yield Console(base_url, conninfo, store, seed, log_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
