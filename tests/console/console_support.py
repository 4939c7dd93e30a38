"""Support of the console tests: the seeded state store and the running api-server they act on.

The api-server runs with the simple auth manager and three users: ``admin`` (Admin), ``operator`` (User: may
act) and ``viewer`` (Viewer: read only). The state store is a database of the session's Postgres, seeded through
the domain modules (enqueue, mailbox records) plus the rows only the runners write (attempts, sync runs).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import requests

from sandbox.auth import systemuser_id

REPO = Path(__file__).resolve().parents[2]

PASSWORDS = {"admin": "admin-pw", "operator": "operator-pw", "viewer": "viewer-pw"}
SCRIPT_NAME = "<script>alert(1)</script>"
HTML_SUBJECT = '<b>Quarterly</b> <img src=x onerror="alert(2)"> offer'
CUSTOMER_MAPPING = "CUSTOMER"
#: The posting DAG of each job queue category (dags/background_posting.py).
POSTING_DAGS = {"SALESPOST": "sales_background_posting", "PURCHPOST": "purchase_background_posting"}
#: The drain run and try of the seeded Job Queue Log Entries, by their status.
LOG_ENTRY_RUNS = {"Error": ("scheduled__2026-11-30T10:00:00+00:00", 3), "Success": ("manual__2026-11-30T09:00", 1)}
# Two of the sandbox's CRM users (the CRONUS salespeople), so Remap's check finds them in Dataverse.
CRM_USER_1 = uuid.UUID(systemuser_id("JO@contoso.com"))
CRM_USER_2 = uuid.UUID(systemuser_id("LT@contoso.com"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_server(
    airflow_env: Any, sandbox_process: Any, state_conn: dict[str, Any], work: Path, extra_env: dict[str, str]
) -> Iterator[tuple[str, Path]]:
    """A real ``airflow api-server`` with the plugin, the simple auth manager and the users of
    :data:`PASSWORDS`, on the session's Airflow home and ``state_conn``; yields ``(base_url, log_file)`` once it
    answers its health check, and stops it afterwards."""
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = free_port()
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
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
        **extra_env,
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
        yield base_url, log_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def token(base_url: str, user: str) -> str:
    """A JWT for ``user`` from the auth manager's token endpoint."""
    response = requests.post(f"{base_url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


@dataclass
class Seed:
    """Ids of the seeded rows the tests act on."""

    ready_entry: uuid.UUID
    other_user_entry: uuid.UUID
    error_entry: uuid.UUID
    coupling_erp_ids: list[str] = field(default_factory=list)
    error_source_ids: list[str] = field(default_factory=list)
    mailbox_ids: list[int] = field(default_factory=list)
    #: (id, number) of sandbox customers and (accountid, accountnumber) of sandbox accounts, none coupled.
    customers: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Console:
    """A running api-server with the console: ``base_url`` (``http://127.0.0.1:<port>``), the state store."""

    base_url: str
    conninfo: str
    store: Any
    seed: Seed
    log_file: Path
    #: the state store's Airflow connection (``AIRFLOW_CONN_DYNAMICS_STATE`` of the api-server)
    state_conn: dict[str, Any] = field(default_factory=dict)

    @property
    def console_url(self) -> str:
        return f"{self.base_url}/dynamics"

    def token(self, user: str) -> str:
        """A JWT for ``user`` from the auth manager's token endpoint."""
        return token(self.base_url, user)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """A DAG run as Airflow's REST API shows it (``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}``)."""
        response = requests.get(
            f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}",
            headers={"Authorization": f"Bearer {self.token('admin')}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the state store directly (what the tests assert on)."""
        with psycopg.connect(self.conninfo) as conn:
            return conn.execute(sql, params).fetchall()


def sandbox_records(seed: Seed) -> None:
    """Real records of the sandbox for Couple (it checks both ids in their systems); the hooks' connections
    must be in the environment."""
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook

    customers = next(BusinessCentralHook().iter_pages("customers", select=["id", "number"], orderby="number"))
    seed.customers = [(str(c["id"]).lower(), str(c["number"])) for c in customers[:3]]
    # The CRONUS accounts have no account number: three with one, so Couple's keeping of crm_key shows.
    crm = DataverseHook()
    tag = uuid.uuid4().hex[:6].upper()
    seed.accounts = [
        (crm.create("accounts", {"name": f"Console test {n}", "accountnumber": f"CT{tag}{n}"}), f"CT{tag}{n}")
        for n in range(3)
    ]


def seed_state(store: Any, conninfo: str) -> Seed:
    """Seed the state store with what every page shows; returns the ids the tests act on."""
    from dynamics_jobqueue.mailbox.records import create_mailbox, map_user, save_profile
    from dynamics_jobqueue.posting.queue import EnqueueRequest, enqueue

    ready = enqueue(store, EnqueueRequest("Sales Invoice", uuid.uuid4(), "103001", "admin"))
    other = enqueue(store, EnqueueRequest("Sales Order", uuid.uuid4(), "101005", "viewer"))
    failed = enqueue(store, EnqueueRequest("Purchase Invoice", uuid.uuid4(), "108001", "admin"))
    message = f"Vendor {SCRIPT_NAME} is blocked for posting."
    seed = Seed(ready.id, other.id, failed.id)
    with psycopg.connect(conninfo) as conn:
        # What the posting runner writes when an attempt fails: the entry in Error, its log entries.
        conn.execute(
            "UPDATE dynamics.job_queue_entries SET status = 'Error', attempts = 3, error_message = %s WHERE id = %s",
            (message, failed.id),
        )
        # Each attempt names the drain task instance that ran it (its DAG run and try).
        for status, error in (("Error", message), ("Success", None)):
            entry = failed if status == "Error" else other
            run_id, try_number = LOG_ENTRY_RUNS[status]
            conn.execute(
                "INSERT INTO dynamics.job_queue_log_entries (job_queue_entry_id, category_code, document_type,"
                " document_id, document_number, user_id, description, status, started_at, ended_at, error_message,"
                " error_detail, dag_id, run_id, task_id, map_index, try_number) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " %s, now() - interval '1 hour', now(), %s, %s, %s, %s, 'drain', -1, %s)",
                (
                    entry.id,
                    entry.category_code,
                    entry.document_type,
                    entry.document_id,
                    entry.document_number,
                    entry.user_id,
                    entry.description,
                    status,
                    error,
                    "HTTP 400 Internal_DataNotFound in postPurchaseInvoice" if error else None,
                    POSTING_DAGS[entry.category_code],
                    run_id,
                    try_number,
                ),
            )
        # What sync runs write: two runs of the customer mapping, a failing and a skipped record, couplings.
        for counts in ((5, 2, 0, 10, 0, 1), (0, 3, 1, 14, 1, 1)):
            conn.execute(
                "INSERT INTO dynamics.sync_job (run_id, mapping, direction, status, finished_at, inserted, modified,"
                " deleted, unchanged, skipped, failed) VALUES ('manual__1', %s, 'to_crm', 'success', now(),"
                " %s, %s, %s, %s, %s, %s)",
                (CUSTOMER_MAPPING, *counts),
            )
        # The job queue entry of the mapping after an idle run: On Hold with Inactivity Timeout.
        conn.execute(
            "INSERT INTO dynamics.sync_job_queue_entry (mapping, status, inactivity_timeout_min, last_run_id,"
            " last_run_idle) VALUES (%s, 'On Hold with Inactivity Timeout', 720, 'manual__1', true)",
            (CUSTOMER_MAPPING,),
        )
        for skipped, key in ((False, SCRIPT_NAME), (True, "10000")):
            source_id = str(uuid.uuid4())
            seed.error_source_ids.append(source_id)
            conn.execute(
                "INSERT INTO dynamics.sync_record_error (mapping, direction, source_id, source_key, destination_id,"
                " kind, message, error_count, skipped) VALUES (%s, 'to_crm', %s, %s, %s, 'record', %s, %s, %s)",
                (
                    CUSTOMER_MAPPING,
                    source_id,
                    key,
                    str(uuid.uuid4()),
                    f"Customer {key}: the account name is too long",
                    2,
                    skipped,
                ),
            )
        for number in ("20000", "30000"):
            erp_id = str(uuid.uuid4())
            seed.coupling_erp_ids.append(erp_id)
            conn.execute(
                "INSERT INTO dynamics.sync_coupling (mapping, erp_id, crm_id, erp_key) VALUES (%s, %s, %s, %s)",
                (CUSTOMER_MAPPING, erp_id, str(uuid.uuid4()), number),
            )
    save_profile(store, "imap-test", "imap", "console_test_imap")
    for name, address in (("Sales", "sales@cronus.example"), ("Support", "support@cronus.example")):
        box = create_mailbox(store, name=name, email_address=address, server_profile="imap-test")
        seed.mailbox_ids.append(box.mailbox_id)
    map_user(store, seed.mailbox_ids[0], CRM_USER_1, changed_by="test")
    map_user(store, seed.mailbox_ids[1], CRM_USER_2, changed_by="test")
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO dynamics.mailbox_message (mailbox_id, message_id, outcome, reason, subject, folder)"
            " VALUES (%s, '<m1@cronus.example>', 'tracked', 'reply to a tracked email', %s, 'INBOX')",
            (seed.mailbox_ids[0], HTML_SUBJECT),
        )
    return seed
