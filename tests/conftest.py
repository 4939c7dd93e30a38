"""Fixtures shared by the whole suite: a real Postgres, the API sandbox over real HTTP, an Airflow home.

Nothing here is a mock: ``state_store`` is a database on a real PostgreSQL server (embedded pgserver, or the
server of ``DYNAMICS_TEST_POSTGRES_URL``), ``sandbox`` is the sandbox process on a free loopback port, and
``airflow_env`` is an initialised Airflow home in which DAGs run with ``airflow dags test``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
INCLUDE = REPO / "include"
if str(INCLUDE) not in sys.path:
    sys.path.insert(0, str(INCLUDE))

from sandbox import connections as sandbox_connections  # noqa: E402


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Postgres ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``host`` (socket folder or host name), ``port``, ``user``, ``password``."""

    host: str
    port: int
    user: str
    password: str

    def conninfo(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def airflow_connection(self, dbname: str) -> dict[str, Any]:
        """Airflow's JSON connection format for database ``dbname``."""
        return {
            "conn_type": "postgres",
            "host": self.host,
            "port": self.port,
            "login": self.user,
            "password": self.password,
            "schema": dbname,
        }


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session: ``DYNAMICS_TEST_POSTGRES_URL`` or an embedded pgserver."""
    from dynamics_jobqueue.state import embedded

    url = os.environ.get("DYNAMICS_TEST_POSTGRES_URL")
    if url:
        kwargs = embedded.connection_kwargs(url)
        yield PostgresServer(kwargs["host"], kwargs["port"], kwargs["login"], kwargs["password"])
        return
    data_dir = tmp_path_factory.mktemp("pg") / "pgdata"
    kwargs = embedded.connection_kwargs(embedded.ensure_running(data_dir))
    yield PostgresServer(kwargs["host"], kwargs["port"], kwargs["login"], kwargs["password"])
    embedded.stop(data_dir)


@pytest.fixture
def state_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database on the session's server; dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def state_store(postgres_server: PostgresServer, state_database: str, monkeypatch: pytest.MonkeyPatch):
    """A :class:`StateStoreHook` on a fresh, migrated database (also exported as ``AIRFLOW_CONN_DYNAMICS_STATE``)."""
    from airflow.sdk import Connection

    from dynamics_jobqueue.hooks.state import StateStoreHook

    conn = postgres_server.airflow_connection(state_database)
    monkeypatch.setenv("AIRFLOW_CONN_DYNAMICS_STATE", json.dumps(conn))
    hook = StateStoreHook(connection=Connection(conn_id="dynamics_state", **conn))
    hook.migrate()
    return hook


# -- the sandbox ---------------------------------------------------------------------------------------------
@dataclass
class Sandbox:
    """A running sandbox: ``base_url`` (``https://127.0.0.1:<port>``) and the ``ca_file`` to verify it with."""

    base_url: str
    ca_file: str

    def session(self) -> requests.Session:
        """A plain requests session that trusts the sandbox's CA (not the environment's bundle)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca_file
        return session

    def admin(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST (or GET without ``payload``) an admin endpoint such as ``/_sandbox/faults``."""
        with self.session() as session:
            url = f"{self.base_url}/_sandbox/{path.lstrip('/').removeprefix('_sandbox/')}"
            response = session.post(url, json=payload) if payload is not None else session.get(url)
            response.raise_for_status()
            return response.json() if response.content else None

    def reset(self) -> None:
        """Reseed with the CRONUS demo data and clear faults and request counters."""
        self.admin("reset", {})
        self.admin("faults", {})

    def connections(self, **kwargs: Any) -> dict[str, dict[str, Any]]:
        return sandbox_connections.airflow_connections(self.base_url, self.ca_file, **kwargs)

    def environment(self, **kwargs: Any) -> dict[str, str]:
        return sandbox_connections.environment(self.base_url, self.ca_file, **kwargs)


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The sandbox as a separate process on a free port, for the whole session."""
    from sandbox.runner import SandboxProcess

    process = SandboxProcess(port=free_port(), data_dir=tmp_path_factory.mktemp("sandbox"))
    process.start()
    try:
        yield Sandbox(process.base_url, str(process.ca_file))
    finally:
        process.stop()


@pytest.fixture
def sandbox(sandbox_process: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The session's sandbox, reset to the CRONUS seed, with the hooks' connections exported for this test."""
    sandbox_process.reset()
    for name, value in sandbox_process.environment().items():
        monkeypatch.setenv(name, value)
    return sandbox_process


# -- Airflow -------------------------------------------------------------------------------------------------
@dataclass
class AirflowEnv:
    """An initialised Airflow home (SQLite metadata) and the environment to run ``airflow`` commands in."""

    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """Run ``airflow <args>`` and return the finished process (output captured as text)."""
        return subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def dags_test(self, dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
        """``airflow dags test <dag_id>`` with ``conf`` as the run's params."""
        args = ["dags", "test", dag_id]
        if conf:
            args += ["-c", json.dumps(conf)]
        return self.run(*args, **kwargs)

    def cli_json(self, *args: str) -> list[dict[str, Any]]:
        """The JSON list printed by ``airflow <args> --output json`` (log lines on stdout are skipped)."""
        result = self.run(*args, "--output", "json")
        assert result.returncode == 0, result.stderr[-2000:]
        [line] = [line for line in result.stdout.splitlines() if line.startswith("[")]
        return list(json.loads(line))

    def run_state(self, dag_id: str) -> tuple[str, dict[str, str]]:
        """The state of ``dag_id``'s latest run and of its tasks (``task_id`` or ``task_id[map_index]``), as
        Airflow shows them (``dags list-runs``, ``tasks states-for-dag-run``)."""
        latest = max(self.cli_json("dags", "list-runs", dag_id), key=lambda r: r["run_after"])
        tasks = self.cli_json("tasks", "states-for-dag-run", dag_id, latest["run_id"])
        return latest["state"], {
            f"{t['task_id']}[{t['map_index']}]" if t.get("map_index") else t["task_id"]: t["state"] for t in tasks
        }


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """An Airflow home with this repo's dags/ and plugins/, its metadata database migrated once per session."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(INCLUDE), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return AirflowEnv(home, env)
