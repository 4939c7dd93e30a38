"""The background posting DAGs: their shape, and real runs with ``airflow dags test`` against the sandbox ERP
and a real Postgres state store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_one_posting_dag_per_job_queue_category(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(DAGS / "background_posting.py"))
    assert bag.import_errors == {}
    for dag_id, category in (("sales_background_posting", "SALESPOST"), ("purchase_background_posting", "PURCHPOST")):
        dag = bag.dags[dag_id]
        assert set(dag.task_dict) == {"batch_post", "drain"}
        drain = dag.task_dict["drain"]
        assert drain.upstream_task_ids == {"batch_post"}
        assert drain.pool == category and drain.category_code == category
        # A skipped Batch Post still drains, and so does one that failed for documents it could not release.
        assert drain.trigger_rule == "all_done"
        assert [t.expression for t in dag.timetable.timetables] == ["*/2 * * * *", "0 18 * * *"]
        assert dag.max_active_runs == 1 and not dag.catchup
        assert set(dag.params) >= {
            "document_types", "filter", "ship", "invoice", "posting_date", "vat_date", "replace_posting_date",
            "replace_document_date", "replace_vat_date", "calc_inv_discount", "print",
        }  # fmt: skip


@pytest.mark.slow
def test_manual_runs_batch_post_then_drain_each_category(airflow_env, state_store, sandbox, tmp_path) -> None:
    from dynamics_jobqueue.posting import queue
    from dynamics_jobqueue.posting.entries import Status
    from sandbox.documents import overlaps

    sandbox.admin("posting", {})
    env = {
        **sandbox.environment(),
        "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"],
        "DYNAMICS_POSTING_PRINT_DESTINATION": str(tmp_path / "printed"),
    }
    sales = airflow_env.dags_test("sales_background_posting", {"print": True, "user_id": "ALICE"}, extra_env=env)
    output = sales.stdout + sales.stderr
    # Batch Post queues what Business Central releases and fails naming the one it would not release; the drain
    # still runs and fails as an alert naming each failed document, its user and the reason; the rest posted.
    assert "1 could not be released and were not queued" in output, output[-3000:]
    assert "There is nothing to release for the document of type Invoice" in output
    assert "1 document(s) of SALESPOST could not be posted" in output, output[-3000:]
    assert "(queued by ALICE): Posting Date is not within your range of allowed posting dates." in output
    finished = queue.list_entries(state_store, category_code="SALESPOST", statuses=[Status.FINISHED])
    assert len(finished) == 11
    assert len(list((tmp_path / "printed").glob("sales-*.pdf"))) == 11
    # The run ends failed as Airflow shows it (list, home page count, alerts), after posting the others.
    assert airflow_env.run_state("sales_background_posting") == ("failed", {"batch_post": "failed", "drain": "failed"})

    purchase = airflow_env.dags_test("purchase_background_posting", {"batch_post": "always"}, extra_env=env)
    output = purchase.stdout + purchase.stderr
    assert "1 document(s) of PURCHPOST could not be posted" in output, output[-3000:]
    assert len(queue.list_entries(state_store, category_code="PURCHPOST", statuses=[Status.FINISHED])) == 8
    assert overlaps(sandbox.admin("postings")["value"]) == []


def test_every_param_is_optional_in_the_trigger_form(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(DAGS / "background_posting.py"))
    for dag_id in ("sales_background_posting", "purchase_background_posting"):
        for name, param in bag.dags[dag_id].params.items():
            # The form counts an empty string as a missing value and asks for one when the schema has no "null".
            assert param.value != "", f"{dag_id}.{name}: an empty default makes the field required"
            types = param.schema.get("type")
            if param.value is None:
                assert isinstance(types, list) and "null" in types, f"{dag_id}.{name}: None needs type null"
        assert bag.dags[dag_id].params.validate() is not None  # the defaults alone pass Airflow's validation


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_both_posting_dags_triggered_through_the_rest_api_with_no_conf_run_to_success(
    postgres_server, state_store, sandbox, tmp_path
) -> None:
    """A real api-server, dag-processor and scheduler (LocalExecutor, Postgres metadata): the REST API validates
    the params of a run triggered with no conf as the trigger form's Trigger button does, and the run's state is
    read back from the REST API."""
    import json
    import secrets
    import signal
    import subprocess
    import sys
    import time
    import uuid

    import psycopg
    import requests

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.posting import queue
    from dynamics_jobqueue.posting.entries import Status
    from sandbox.documents import DESIGNED_TO_FAIL, overlaps

    sandbox.admin("posting", {})
    bc = BusinessCentralHook()
    for entity_set in ("salesInvoices", "salesCreditMemos", "purchaseInvoices"):  # every run should succeed
        for page in bc.iter_pages(entity_set, filter=f"yourReference eq '{DESIGNED_TO_FAIL}'"):
            for record in page:
                bc.delete(entity_set, record["id"])

    dbname = f"airflow_rest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": "admin-password"}))
    port = _free_port()
    host = f"?host={postgres_server.host}&port={postgres_server.port}"
    if str(postgres_server.host).startswith("/"):
        sql_alchemy = f"postgresql+psycopg2://{postgres_server.user}:{postgres_server.password}@/{dbname}{host}"
    else:
        sql_alchemy = (
            f"postgresql+psycopg2://{postgres_server.user}:{postgres_server.password}@{postgres_server.host}:"
            f"{postgres_server.port}/{dbname}"
        )
    env = {
        **os.environ,
        **sandbox.environment(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "DYNAMICS_POSTING_DRAIN_CRON": "0 0 1 1 *",  # no scheduled drain competes with the triggered runs
        "DYNAMICS_POSTING_PRINT_DESTINATION": str(tmp_path / "printed"),
        "PYTHONPATH": os.pathsep.join([str(DAGS.parent / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))

    def cli(*args: str) -> None:
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    processes: dict[str, subprocess.Popen[bytes]] = {}
    base = f"http://127.0.0.1:{port}"
    try:
        cli("db", "migrate")
        (tmp_path / "pools.json").write_text(
            json.dumps({c: {"slots": 1, "description": c} for c in ("SALESPOST", "PURCHPOST")})
        )
        cli("pools", "import", str(tmp_path / "pools.json"))
        for name, args in (
            ("api-server", ("api-server", "--port", str(port), "--workers", "1")),
            ("dag-processor", ("dag-processor",)),
            ("scheduler", ("scheduler",)),
        ):
            log = (home / f"{name}.log").open("wb")
            processes[name] = subprocess.Popen(
                [airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def alive() -> None:
            for name, process in processes.items():
                assert process.poll() is None, (home / f"{name}.log").read_text(errors="replace")[-3000:]

        session = requests.Session()
        deadline = time.monotonic() + 300
        while True:
            alive()
            assert time.monotonic() < deadline, (home / "api-server.log").read_text(errors="replace")[-3000:]
            try:
                token = session.post(
                    f"{base}/auth/token", json={"username": "admin", "password": "admin-password"}, timeout=10
                )
                if token.status_code in (200, 201):
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting (slow on a loaded machine)
                pass
            time.sleep(1)
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        dag_ids = ("sales_background_posting", "purchase_background_posting")
        for dag_id in dag_ids:
            while session.get(f"{base}/api/v2/dags/{dag_id}", timeout=10).status_code != 200:
                alive()
                assert time.monotonic() < deadline, (home / "dag-processor.log").read_text(errors="replace")[-3000:]
                time.sleep(2)

        run_ids = {}
        for dag_id in dag_ids:
            triggered = session.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None}, timeout=30)
            assert triggered.status_code == 200, triggered.text
            run_ids[dag_id] = triggered.json()["dag_run_id"]
            assert triggered.json()["conf"] == {}

        states: dict[str, str] = {}
        deadline = time.monotonic() + 600
        while len(states) < len(dag_ids):
            alive()
            assert time.monotonic() < deadline, f"{states}\n" + (home / "scheduler.log").read_text()[-3000:]
            for dag_id, run_id in run_ids.items():
                run = session.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=10).json()
                if run["state"] in ("success", "failed"):
                    states[dag_id] = run["state"]
            time.sleep(2)
        tasks = {
            dag_id: {
                t["task_id"]: t["state"]
                for t in session.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", timeout=10).json()[
                    "task_instances"
                ]
            }
            for dag_id, run_id in run_ids.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    assert states == {dag_id: "success" for dag_id in dag_ids}, tasks
    assert all(tasks[d]["batch_post"] == tasks[d]["drain"] == "success" for d in dag_ids), tasks
    # The manual runs queued (Batch Post with the defaults) and posted every open document of each category.
    assert len(queue.list_entries(state_store, category_code="SALESPOST", statuses=[Status.FINISHED])) == 11
    assert len(queue.list_entries(state_store, category_code="PURCHPOST", statuses=[Status.FINISHED])) == 8
    assert overlaps(sandbox.admin("postings")["value"]) == []


@pytest.mark.slow
def test_each_attempt_names_the_dag_run_and_task_that_posted_it(airflow_env, state_store, sandbox, monkeypatch) -> None:
    """A drain run by Airflow keeps its task instance on each Job Queue Log Entry; the console's log entries (the
    list filtered by the run, and Show Error's) link to that run's task log in the Airflow UI."""
    import uuid
    from urllib.parse import quote

    from dynamics_jobqueue.console import service
    from dynamics_jobqueue.console.listing import PageRequest
    from dynamics_jobqueue.console.models import JobQueueLogEntryOut
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.posting import queue

    sandbox.admin("posting", {})
    [invoice] = next(BusinessCentralHook().iter_pages("salesInvoices", filter="number eq 'S-INV1001'"))
    entry = queue.enqueue(
        state_store,
        queue.EnqueueRequest(
            document_type="Sales Invoice", document_id=uuid.UUID(invoice["id"]), document_number="S-INV1001",
            user_id="ALICE",
        ),
    )  # fmt: skip
    env = {**sandbox.environment(), "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]}
    result = airflow_env.dags_test("sales_background_posting", {"batch_post": "never"}, extra_env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    run = max(airflow_env.cli_json("dags", "list-runs", "sales_background_posting"), key=lambda r: r["run_after"])
    assert run["state"] == "success"
    run_id = run["run_id"]

    [log] = queue.list_log_entries(state_store, entry.id)
    assert (log.status, log.dag_id, log.run_id, log.task_id, log.map_index, log.try_number) == (
        "Success", "sales_background_posting", run_id, "drain", -1, 1,
    )  # fmt: skip
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example")
    expected = (
        f"https://airflow.example/dags/sales_background_posting/runs/{quote(run_id, safe='')}/tasks/drain?try_number=1"
    )
    assert JobQueueLogEntryOut.model_validate(log.__dict__).task_log_url == expected  # Show Error's attempts
    rows, total, _ = service.log_entries(state_store, service.LogFilter(run_id=run_id), PageRequest())
    assert total == 1 and JobQueueLogEntryOut.model_validate(rows[0]).task_log_url == expected
    assert service.log_entries(state_store, service.LogFilter(run_id="manual__other"), PageRequest())[1] == 0
