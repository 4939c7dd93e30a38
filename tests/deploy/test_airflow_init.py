"""include/docker/airflow_init.py, the compose file's ``airflow-init``: run for real against a Postgres server and
an Airflow metadata database, twice (the service runs on every ``docker compose up``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "include" / "docker" / "airflow_init.py"
sys.path.insert(0, str(INIT.parent))

import airflow_init  # noqa: E402

from dynamics_jobqueue import get_provider_info  # noqa: E402

ENV = {
    "BUSINESS_CENTRAL_TENANT_ID": "contoso.onmicrosoft.com",
    "BUSINESS_CENTRAL_CLIENT_ID": "bc-app",
    "BUSINESS_CENTRAL_CLIENT_SECRET": "bc-secret",
    "BUSINESS_CENTRAL_COMPANY_ID": "c0c05000-0000-4000-8000-000000000001",
    "SMTP_HOST": "smtp.contoso.com",
    "SMTP_FROM": "airflow@contoso.com",
}


def test_connections_use_the_providers_connection_types() -> None:
    registered = {c["connection-type"] for c in get_provider_info()["connection-types"]} | {"smtp", "postgres"}
    for env in (
        {
            **ENV,
            "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
            "DATAVERSE_CLIENT_ID": "crm-app",
            "GRAPH_CLIENT_ID": "graph-app",
            "MAIL_HOST": "mail.contoso.com",
            "MAIL_EXTRA": '{"imap_port": 993, "imap_ssl": true}',
        },
        {"DYNAMICS_SANDBOX": "true"},
    ):
        connections = airflow_init.default_connections(env)
        assert set(connections) == {
            "business_central_default",
            "dataverse_default",
            "graph_default",
            "mail_default",
            "smtp_default",
        }
        assert {c["conn_type"] for c in connections.values()} <= registered
    # Dataverse and Graph fall back to the Business Central tenant.
    assert connections["dataverse_default"]["extra"]["tenant_id"] == "sandbox-tenant"


def test_empty_environment_creates_no_connection() -> None:
    assert airflow_init.default_connections({}) == {}


@pytest.mark.slow
def test_init_migrates_creates_pools_and_connections_idempotently(postgres_server: Any, airflow_env: Any) -> None:
    dbname = f"state_{uuid.uuid4().hex[:10]}"
    env = {
        **airflow_env.env,
        **ENV,
        "AIRFLOW_CONN_DYNAMICS_STATE": json.dumps(postgres_server.airflow_connection(dbname)),
    }
    try:
        first = subprocess.run(
            [sys.executable, str(INIT)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"state store: database {dbname} created" in first.stdout
        assert "Imported connection business_central_default" in first.stdout
        assert "Imported connection smtp_default" in first.stdout

        with psycopg.connect(postgres_server.conninfo(dbname)) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'dynamics'")}
        assert tables, "the state store's migrations did not run"

        pools = airflow_env.run("pools", "list", "--output", "json", extra_env=env)
        slots = {p["pool"]: int(p["slots"]) for p in json.loads(pools.stdout)}
        assert slots["SALESPOST"] == 1 and slots["PURCHPOST"] == 1

        got = airflow_env.run("connections", "get", "business_central_default", "--output", "json", extra_env=env)
        [bc] = json.loads(got.stdout)
        assert bc["conn_type"] == "dynamics_business_central"
        assert bc["extra_dejson"]["company_id"] == ENV["BUSINESS_CENTRAL_COMPANY_ID"]

        second = subprocess.run(
            [sys.executable, str(INIT)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert second.returncode == 0, second.stdout + second.stderr
        assert "created" not in second.stdout and "Imported" not in second.stdout
        assert "Kept connection business_central_default: connection already exists." in second.stdout
        assert "migrations applied none (up to date)" in second.stdout
    finally:
        for conn_id in ("business_central_default", "smtp_default"):
            airflow_env.run("connections", "delete", conn_id, extra_env=env)
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
