"""One-shot initialisation of a deployment (the ``airflow-init`` service of docker-compose.yaml).

Runs after the image's entrypoint migrated the Airflow metadata database (``_AIRFLOW_DB_MIGRATE``). Each step is
idempotent, so the service may run on every ``docker compose up``:

1. create the state store's database (connection ``dynamics_state``) on the Postgres server when missing and
   apply the package's migrations (dynamics_jobqueue/sql/migrations);
2. create the posting pools: one slot per job queue category, because the reference system runs one entry of a
   category at a time (docs/reference/dynamics-semantics.md, "Job Queue Category");
3. create the default connections from the environment (variables named in .env.example), skipping any that
   already exist so edits made in the Airflow UI are kept. ``DYNAMICS_SANDBOX=true`` points them at the
   services of the ``sandbox`` compose profile.

Run as ``python include/docker/airflow_init.py``; ``--print-connections`` prints the connections it would
create (JSON, secrets included: for checking a .env, never for logs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dynamics_jobqueue.posting.categories import PURCHPOST, SALESPOST

POOLS = {
    SALESPOST: "Job queue category SALESPOST: one sales posting at a time",
    PURCHPOST: "Job queue category PURCHPOST: one purchase posting at a time",
}

#: Where the sandbox profile's services answer, seen from the Airflow containers.
SANDBOX_URL = "https://sandbox:8765"
SANDBOX_CA = "/opt/sandbox/tls/ca.pem"


def default_connections(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The default connections described by ``env``, in Airflow's JSON connection format.

    :param env: the environment (variables of .env.example).
    :return: connection id -> connection; a connection whose required variables are empty is left out.
    """
    if env.get("DYNAMICS_SANDBOX", "").lower() == "true":
        return sandbox_connections()
    connections: dict[str, dict[str, Any]] = {}
    tenant = env.get("BUSINESS_CENTRAL_TENANT_ID", "")
    if tenant and env.get("BUSINESS_CENTRAL_CLIENT_ID"):
        extra: dict[str, Any] = {
            "tenant_id": tenant,
            "environment": env.get("BUSINESS_CENTRAL_ENVIRONMENT") or "production",
        }
        if env.get("BUSINESS_CENTRAL_COMPANY_ID"):
            extra["company_id"] = env["BUSINESS_CENTRAL_COMPANY_ID"]
        connections["business_central_default"] = {
            "conn_type": "dynamics_business_central",
            "host": env.get("BUSINESS_CENTRAL_HOST") or "https://api.businesscentral.dynamics.com",
            "login": env["BUSINESS_CENTRAL_CLIENT_ID"],
            "password": env.get("BUSINESS_CENTRAL_CLIENT_SECRET", ""),
            "extra": extra,
        }
    if env.get("DATAVERSE_URL") and env.get("DATAVERSE_CLIENT_ID"):
        connections["dataverse_default"] = {
            "conn_type": "dynamics_dataverse",
            "host": env["DATAVERSE_URL"],
            "login": env["DATAVERSE_CLIENT_ID"],
            "password": env.get("DATAVERSE_CLIENT_SECRET", ""),
            "extra": {"tenant_id": env.get("DATAVERSE_TENANT_ID") or tenant},
        }
    if env.get("GRAPH_CLIENT_ID"):
        connections["graph_default"] = {
            "conn_type": "dynamics_graph",
            "host": "https://graph.microsoft.com",
            "login": env["GRAPH_CLIENT_ID"],
            "password": env.get("GRAPH_CLIENT_SECRET", ""),
            "extra": {"tenant_id": env.get("GRAPH_TENANT_ID") or tenant},
        }
    if env.get("MAIL_HOST"):
        connections["mail_default"] = {
            "conn_type": "dynamics_mail",
            "host": env["MAIL_HOST"],
            "login": env.get("MAIL_LOGIN", ""),
            "password": env.get("MAIL_PASSWORD", ""),
            "extra": json.loads(env.get("MAIL_EXTRA") or "{}"),
        }
    if env.get("SMTP_HOST"):
        connections["smtp_default"] = smtp_connection(
            env["SMTP_HOST"],
            int(env.get("SMTP_PORT") or 587),
            login=env.get("SMTP_LOGIN", ""),
            password=env.get("SMTP_PASSWORD", ""),
            starttls=env.get("SMTP_STARTTLS", "true").lower() == "true",
            sender=env.get("SMTP_FROM", ""),
        )
    return connections


def smtp_connection(
    host: str, port: int, *, login: str = "", password: str = "", starttls: bool = False, sender: str = ""
) -> dict[str, Any]:
    """The smtp provider's connection (conn type ``smtp``) that the failure alerts are sent through.

    Extra fields are the smtp provider's: ``disable_tls`` turns STARTTLS off, ``disable_ssl`` implicit TLS off,
    ``from_email`` is the sender when a notifier names none.
    """
    extra: dict[str, Any] = {"disable_ssl": True, "disable_tls": not starttls}
    if sender:
        extra["from_email"] = sender
    return {"conn_type": "smtp", "host": host, "port": port, "login": login, "password": password, "extra": extra}


def sandbox_connections() -> dict[str, dict[str, Any]]:
    """Connections to the ``sandbox`` profile: the API sandbox (BC, Dataverse, Graph) and the GreenMail server."""
    from sandbox.connections import airflow_connections

    connections = airflow_connections(SANDBOX_URL, SANDBOX_CA)
    # The sandbox answers Microsoft Graph under /graph with the same app registrations.
    connections["graph_default"] = {
        **connections["dataverse_default"],
        "conn_type": "dynamics_graph",
        "host": f"{SANDBOX_URL}/graph",
    }
    connections["mail_default"] = {
        "conn_type": "dynamics_mail",
        "host": "mailserver",
        "login": "mailbox@cronus.test",
        "password": "mailbox",
        "extra": {"imap_port": 3143, "pop3_port": 3110, "smtp_port": 3025},
    }
    connections["smtp_default"] = smtp_connection("mailserver", 3025, sender="airflow@cronus.test")
    return connections


def create_state_database(host: str, port: int, login: str, password: str, dbname: str) -> bool:
    """Create the database ``dbname`` on the server when it does not exist.

    :param host: server host (or socket folder). :param port: server port.
    :param login: a role allowed to create databases. :param password: its password.
    :param dbname: the state store's database (the ``dynamics_state`` connection's schema).
    :return: ``True`` when the database was created.
    :raises psycopg.OperationalError: when the server cannot be reached.
    """
    server = psycopg.conninfo.make_conninfo(host=host, port=port, user=login, password=password, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    # The CLI of this interpreter's installation: on PATH in the image, next to python in a virtualenv.
    executable = shutil.which("airflow") or str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([executable, *args], capture_output=True, text=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-connections", action="store_true", help="print the connections and exit")
    args = parser.parse_args(argv)
    connections = default_connections(os.environ)
    if args.print_connections:
        print(json.dumps(connections, indent=2, sort_keys=True))
        return 0

    from dynamics_jobqueue.hooks.state import StateStoreHook

    state = StateStoreHook.get_connection(StateStoreHook.default_conn_name)
    if create_state_database(state.host, state.port or 5432, state.login, state.password, state.schema):
        print(f"state store: database {state.schema} created", flush=True)
    print(
        f"state store: migrations applied {StateStoreHook(migrate=False).migrate() or 'none (up to date)'}", flush=True
    )

    # One CLI call each (the CLI starts in seconds, not milliseconds). The files are private and removed at
    # once: the connections file holds secrets.
    with tempfile.TemporaryDirectory(prefix="airflow-init-") as folder:
        pools = Path(folder) / "pools.json"
        pools.write_text(json.dumps({name: {"slots": 1, "description": text} for name, text in POOLS.items()}))
        result = _airflow("pools", "import", str(pools))
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
            return result.returncode
        print(f"pools {', '.join(POOLS)}: 1 slot each", flush=True)
        if not connections:
            return 0
        # Without --overwrite the CLI keeps existing connections ("connection already exists").
        conn_file = Path(folder) / "connections.json"
        conn_file.write_text(json.dumps(connections))
        result = _airflow("connections", "import", str(conn_file))
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
            return result.returncode
        for line in result.stdout.splitlines():
            if line.startswith(("Imported connection", "Could not import connection")):
                print(line.replace("Could not import connection", "Kept connection"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
