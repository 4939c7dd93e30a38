"""The console's JSON API over HTTP against a real api-server: auth refusal, CSRF, paging, checks, Audit Log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from console_support import CRM_USER_1, CRM_USER_2, CUSTOMER_MAPPING, Console

from dynamics_jobqueue.console.app import create_app

pytestmark = pytest.mark.timeout(300)


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the console app, path parameters filled with plausible values."""
    values = {
        "entry_id": str(uuid.uuid4()),
        "mailbox_id": "1",
        "mapping": "CUSTOMER",
        "erp_id": "x",
        "action": "skip",
        "name": "swagger-ui.css",
    }
    found = []
    for route in create_app().routes:
        path = getattr(route, "path", "")
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            found.append((method, re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)))
    return found


def _session(console: Console, user: str) -> requests.Session:
    """A browser-like session: the ``_token`` cookie the Airflow UI sets, and the console's CSRF cookie (issued
    with ``GET /api/session``, as the React app starts)."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set("_token", console.token(user), domain="127.0.0.1", path="/")
    answer = session.get(f"{console.console_url}/api/session", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["csrf_token"] == session.cookies.get("dynamics_csrf")
    return session


def _csrf(session: requests.Session) -> str:
    return str(session.cookies.get("dynamics_csrf"))


def test_every_route_refuses_anonymous(console: Console) -> None:
    routes = _routes()
    assert len(routes) > 25
    for method, path in routes:
        response = requests.request(method, f"{console.console_url}{path}", timeout=30, allow_redirects=False)
        assert response.status_code in (401, 403), (method, path, response.status_code)


def test_invalid_token_is_refused(console: Console) -> None:
    response = requests.get(
        f"{console.console_url}/api/job-queue-entries", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30
    )
    assert response.status_code == 403


def test_viewer_reads_but_cannot_act(console: Console) -> None:
    viewer = _session(console, "viewer")
    assert viewer.get(f"{console.console_url}/api/job-queue-entries", timeout=30).status_code == 200
    assert viewer.get(f"{console.console_url}/api/session", timeout=30).json()["can_edit"] is False
    entry = console.seed.ready_entry
    response = viewer.delete(
        f"{console.console_url}/api/job-queue-entries/{entry}", headers={"X-CSRF-Token": _csrf(viewer)}
    )
    assert response.status_code == 403
    assert console.query("SELECT count(*) FROM dynamics.job_queue_entries WHERE id = %s", (entry,)) == [(1,)]


def test_operator_may_act(console: Console) -> None:
    operator = _session(console, "operator")
    source_id = console.seed.error_source_ids[0]
    response = operator.post(
        f"{console.console_url}/api/sync/errors/retry",
        json={"mapping": CUSTOMER_MAPPING, "direction": "to_crm", "source_id": source_id},
        headers={"X-CSRF-Token": _csrf(operator)},
    )
    assert response.status_code == 200, response.text
    assert console.query(
        "SELECT error_count, skipped FROM dynamics.sync_record_error WHERE source_id = %s", (source_id,)
    ) == [(0, False)]


def test_json_write_with_cookie_needs_the_csrf_header(console: Console) -> None:
    admin = _session(console, "admin")
    body = {"mapping": CUSTOMER_MAPPING, "direction": "to_crm", "source_id": console.seed.error_source_ids[0]}
    assert admin.post(f"{console.console_url}/api/sync/errors/skip", json=body).status_code == 403
    forged = {"X-CSRF-Token": "forged"}
    assert admin.post(f"{console.console_url}/api/sync/errors/skip", json=body, headers=forged).status_code == 403
    # A foreign site can make the browser send the auth cookie but cannot read the token or set the CSRF cookie.
    foreign = requests.post(
        f"{console.console_url}/api/sync/errors/skip",
        json=body,
        headers=forged,
        cookies={"_token": console.token("admin"), "dynamics_csrf": "other"},
        timeout=30,
    )
    assert foreign.status_code == 403
    bearer = {"Authorization": f"Bearer {console.token('admin')}"}
    response = requests.post(f"{console.console_url}/api/sync/errors/skip", json=body, headers=bearer, timeout=30)
    assert response.status_code == 200, response.text
    assert console.query(
        "SELECT skipped FROM dynamics.sync_record_error WHERE source_id = %s", (body["source_id"],)
    ) == [(True,)]
    response = requests.post(f"{console.console_url}/api/sync/errors/unskip", json=body, headers=bearer, timeout=30)
    assert response.status_code == 200, response.text


def test_enqueue_is_the_post_button_of_an_external_system(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('operator')}"}
    document = {"document_type": "Sales Invoice", "document_id": str(uuid.uuid4()), "document_number": "103777"}
    url = f"{console.console_url}/api/job-queue-entries"
    response = requests.post(url, json=document, headers=bearer, timeout=30)
    assert response.status_code == 201, response.text
    entry: dict[str, Any] = response.json()
    assert entry["status"] == "Ready" and entry["user_id"] == "operator"
    assert entry["job_queue_status"] == "Scheduled for Posting"
    again = requests.post(url, json=document, headers=bearer, timeout=30)
    assert again.status_code == 409
    assert "cannot be posted because it has already been scheduled for posting" in again.json()["detail"]
    rows = console.query(
        "SELECT status, user_id FROM dynamics.job_queue_entries WHERE document_id = %s", (document["document_id"],)
    )
    assert rows == [("Ready", "operator")]
    mine = requests.get(url, params={"mine": "true"}, headers=bearer, timeout=30).json()
    assert [e["document_number"] for e in mine["items"]] == ["103777"] and mine["total"] == 1


def test_listings_are_paged_with_totals_and_labels(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('viewer')}"}
    base = f"{console.console_url}/api"
    logs = requests.get(f"{base}/job-queue-log-entries", params={"status": "Error"}, headers=bearer).json()
    assert [log["status"] for log in logs["items"]] == ["Error"] and logs["total"] == 1
    documents = requests.get(f"{base}/documents-to-handle", headers=bearer).json()
    assert documents["items"][0]["document_number"] == "108001" and documents["total"] == 1
    runs = requests.get(f"{base}/sync/runs", params={"mapping": CUSTOMER_MAPPING, "sort": "-inserted"}, headers=bearer)
    assert [run["inserted"] for run in runs.json()["items"]] == [5, 0]
    assert {(run["direction_label"], run["status_label"]) for run in runs.json()["items"]} == {
        ("ERP to CRM", "Succeeded")
    }
    errors = requests.get(f"{base}/sync/errors", params={"skipped": "true"}, headers=bearer).json()
    assert errors["total"] == 1 and errors["items"][0]["source_key"] == "10000"
    assert errors["items"][0]["kind_label"] == "Record error"
    assert errors["items"][0]["skipped_reason"] == (
        "Skipped after failing 2 times; last error: Customer 10000: the account name is too long"
    )
    # Pages of one: each has the total; sorted by key both ways; past the end is empty, not an error.
    pages = [
        requests.get(
            f"{base}/sync/couplings", params={"limit": 1, "offset": offset, "sort": "-erp_key"}, headers=bearer
        ).json()
        for offset in (0, 1, 2)
    ]
    assert [p["total"] for p in pages] == [2, 2, 2]
    assert [[c["erp_key"] for c in p["items"]] for p in pages] == [["30000"], ["20000"], []]
    for params in ({"sort": "password"}, {"limit": 501}, {"offset": -1}):
        refused = requests.get(f"{base}/sync/couplings", params=params, headers=bearer)
        assert refused.status_code == 422, params
    mailboxes = requests.get(f"{base}/mailboxes", headers=bearer).json()
    assert {w["workload"] for w in mailboxes[0]["workloads"]} == {"incoming", "outgoing", "act"}
    assert {w["status_label"] for w in mailboxes[0]["workloads"]} == {"Not run"}
    messages = requests.get(f"{base}/mailbox-messages", headers=bearer).json()
    assert messages["total"] == 1 and messages["items"][0]["outcome_label"] == "Tracked"
    trends = requests.get(f"{base}/sync/trends", params={"bucket": "hour"}, headers=bearer).json()
    assert sum(t["inserted"] for t in trends if t["mapping"] == CUSTOMER_MAPPING) == 5
    mappings = requests.get(f"{base}/sync/mappings", headers=bearer).json()
    customer = next(m for m in mappings if m["name"] == CUSTOMER_MAPPING)
    assert customer["loaded"] and customer["crm_entity_set"] == "accounts"
    assert (customer["inactivity_timeout_min"], customer["job_queue_status"]) == (
        720,
        "On Hold with Inactivity Timeout",
    )
    since, until = (datetime.fromisoformat(customer[k]) for k in ("job_queue_status_since", "on_hold_until"))
    assert until - since == timedelta(minutes=720)


def test_openapi_has_servers_status_codes_and_local_docs(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('viewer')}"}
    schema = requests.get(f"{console.console_url}/openapi.json", headers=bearer).json()
    assert schema["servers"][0]["url"] == "/dynamics"
    assert "/api/job-queue-entries" in schema["paths"] and "post" in schema["paths"]["/api/job-queue-entries"]
    assert "/job-queue" not in schema["paths"]
    couple = schema["paths"]["/api/sync/couplings"]["post"]["responses"]
    assert set(couple) == {"201", "401", "403", "404", "409", "422", "502"}
    for page, asset in (("docs", "swagger-ui-bundle.js"), ("redoc", "redoc.standalone.js")):
        html = requests.get(f"{console.console_url}/{page}", headers=bearer).text
        assert f"/dynamics/docs-assets/{asset}" in html and "cdn" not in html.lower()
        script = requests.get(f"{console.console_url}/docs-assets/{asset}", headers=bearer)
        assert script.status_code == 200 and len(script.content) > 100_000
    assert requests.get(f"{console.console_url}/docs-assets/swagger-ui.css").status_code == 401


def _audit_log(console: Console, event: str) -> list[dict[str, Any]]:
    """Airflow's Audit Log entries of ``event`` (``GET /api/v2/eventLogs``)."""
    response = requests.get(
        f"{console.base_url}/api/v2/eventLogs",
        params={"event": event},
        headers={"Authorization": f"Bearer {console.token('admin')}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["event_logs"])


def test_couple_checks_the_mapping_and_both_records_and_is_audited(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('operator')}"}
    url = f"{console.console_url}/api/sync/couplings"
    (erp_id, number), (crm_id, account_number) = console.seed.customers[0], console.seed.accounts[0]
    refusals = [
        ({"mapping": "BOGUS", "erp_id": erp_id, "crm_id": crm_id}, 422, "no table mapping 'BOGUS'"),
        ({"mapping": CUSTOMER_MAPPING, "erp_id": "10000", "crm_id": crm_id}, 422, "not a GUID"),
        ({"mapping": CUSTOMER_MAPPING, "erp_id": str(uuid.uuid4()), "crm_id": crm_id}, 404, "of customers does not"),
        ({"mapping": CUSTOMER_MAPPING, "erp_id": erp_id, "crm_id": str(uuid.uuid4())}, 404, "of accounts does not"),
    ]
    for body, code, text in refusals:
        response = requests.post(url, json=body, headers=bearer, timeout=60)
        assert (response.status_code, text in response.json()["detail"]) == (code, True), response.text
    assert console.query("SELECT count(*) FROM dynamics.sync_coupling WHERE mapping = 'BOGUS'") == [(0,)]
    body = {"mapping": CUSTOMER_MAPPING, "erp_id": erp_id.upper(), "crm_id": crm_id}
    response = requests.post(url, json=body, headers=bearer, timeout=60)
    assert response.status_code == 201, response.text
    coupled = console.query("SELECT crm_id, erp_key, crm_key FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,))
    assert coupled == [(crm_id, number, account_number)]
    assert requests.post(url, json=body, headers=bearer, timeout=60).status_code == 409
    # The console's search finds it by either key.
    found = requests.get(url, params={"search": account_number}, headers=bearer).json()
    assert [c["erp_id"] for c in found["items"]] == [erp_id]

    uncouple = f"{url}/{CUSTOMER_MAPPING}/{erp_id}"
    assert requests.delete(uncouple, headers=bearer, timeout=30).status_code == 422
    assert requests.delete(uncouple, params={"confirm": "true"}, headers=bearer, timeout=30).status_code == 200
    assert console.query("SELECT count(*) FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,)) == [(0,)]

    entries = _audit_log(console, "dynamics_console.couple")
    assert len(entries) == 6 and {e["owner"] for e in entries} == {"operator"}
    assert any(f'"crm_id": "{crm_id}"' in (e["extra"] or "") for e in entries)
    assert [e["owner"] for e in _audit_log(console, "dynamics_console.uncouple")] == ["operator", "operator"]


def test_remap_picks_a_crm_user(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('operator')}"}
    users = requests.get(f"{console.console_url}/api/crm-users", params={"search": "JO@"}, headers=bearer).json()
    assert [u["systemuserid"] for u in users] == [str(CRM_USER_1)]
    support = console.seed.mailbox_ids[1]
    url = f"{console.console_url}/api/mailboxes/{support}/remap"
    response = requests.post(url, json={"crm_user_id": str(uuid.uuid4())}, headers=bearer, timeout=30)
    assert response.status_code == 422 and "is not a CRM user" in response.json()["detail"]
    assert console.query("SELECT crm_user_id FROM dynamics.mailbox WHERE mailbox_id = %s", (support,)) == [
        (CRM_USER_2,)
    ]
    assert _audit_log(console, "dynamics_console.remap")[0]["owner"] == "operator"


def test_plugin_pages_are_react_apps_of_the_airflow_ui(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.token('admin')}"}
    plugins = requests.get(f"{console.base_url}/api/v2/plugins", headers=bearer, timeout=30).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "dynamics_jobqueue")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/dynamics"
    assert ours["external_views"] == []
    apps = {app["url_route"]: app for app in ours["react_apps"]}
    assert set(apps) == {
        f"dynamics-{key}"
        for key in ("job-queue", "my-job-queue", "documents", "job-queue-log", "sync", "mailboxes", "trends")
    }
    assert apps["dynamics-sync"]["bundle_url"] == "dynamics/ui/console.js?page=sync"
    assert {app["category"] for app in apps.values()} == {"Dynamics"}
    bundle = requests.get(f"{console.console_url}/ui/console.js", headers=bearer, timeout=30)
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    assert "AirflowPlugin" in bundle.text and "ChakraUI" in bundle.text  # React and Chakra are the host's
    assert requests.get(f"{console.console_url}/ui/console.js", timeout=30).status_code == 401
    # The console's old address leads to its page in the Airflow UI.
    moved = requests.get(f"{console.console_url}/", headers=bearer, timeout=30, allow_redirects=False)
    assert moved.headers["location"] == f"{console.base_url}/plugin/dynamics-job-queue"


def test_test_and_enable_queues_a_mailbox_sync_run(console: Console) -> None:
    sales = console.seed.mailbox_ids[0]
    before = console.query("SELECT workload, status, enabled, next_sync_at FROM dynamics.mailbox_workload ORDER BY 1")
    bearer = {"Authorization": f"Bearer {console.token('operator')}"}
    url = f"{console.console_url}/api/mailboxes/{sales}/test-and-enable"
    response = requests.post(url, headers=bearer, timeout=30)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["dag_id"] == "mailbox_sync"
    assert body["dag_run_url"] == f"{console.base_url}/dags/mailbox_sync/runs/{quote(body['dag_run_id'], safe='')}"
    run = console.dag_run("mailbox_sync", body["dag_run_id"])
    assert run["conf"] == {"test_and_enable": [sales]}
    assert (run["run_type"], run["state"], run["triggered_by"]) == ("manual", "queued", "rest_api")
    assert run["triggering_user_name"] == "operator"
    assert "sales@cronus.example" in run["note"]
    assert body["message"].startswith("Test & Enable of mailbox sales@cronus.example: DAG run manual__")
    # The request ran nothing: the workloads are as they were until the run does the test.
    after = console.query("SELECT workload, status, enabled, next_sync_at FROM dynamics.mailbox_workload ORDER BY 1")
    assert after == before
    unknown = requests.post(f"{console.console_url}/api/mailboxes/987654/test-and-enable", headers=bearer, timeout=30)
    assert unknown.status_code == 404 and "There is no mailbox 987654." in unknown.json()["detail"]


def _approval_run(console: Console, airflow_env: Any, request_id: int, log_file: Path) -> subprocess.Popen:
    """``airflow dags test mailbox_remap_approval`` for ``request_id`` in the background (it waits while the
    required action is open), on the console's state store."""
    env = {**airflow_env.env, "AIRFLOW_CONN_DYNAMICS_STATE": json.dumps(console.state_conn)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log_file.open("w") as log:
        return subprocess.Popen(
            [airflow, "dags", "test", "mailbox_remap_approval", "-c", json.dumps({"request_id": request_id})],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def _answer_remap(console: Console, airflow_env: Any, request_id: int, option: str, log_file: Path) -> str:
    """Run the approval DAG for ``request_id``, answer its required action with ``option`` as the operator
    (REST API), wait for the run to end; returns the run's output."""
    run = _approval_run(console, airflow_env, request_id, log_file)
    try:
        deadline = time.monotonic() + 120
        while True:
            response = requests.get(
                f"{console.base_url}/api/v2/dags/mailbox_remap_approval/dagRuns/~/hitlDetails",
                params={"response_received": "false"},
                headers={"Authorization": f"Bearer {console.token('viewer')}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            if details := response.json()["hitl_details"]:
                break
            assert run.poll() is None, log_file.read_text()[-4000:]
            assert time.monotonic() < deadline, log_file.read_text()[-4000:]
            time.sleep(1)
        (detail,) = details
        assert detail["options"] == ["Approve", "Reject"]
        ti = detail["task_instance"]
        path = (
            f"{console.base_url}/api/v2/dags/mailbox_remap_approval/dagRuns/{quote(ti['dag_run_id'], safe='')}"
            f"/taskInstances/approve_remap/{ti['map_index']}/hitlDetails"
        )
        answered = requests.patch(
            path,
            json={"chosen_options": [option]},
            headers={"Authorization": f"Bearer {console.token('operator')}"},
            timeout=30,
        )
        assert answered.status_code == 200, answered.text
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = log_file.read_text()
    assert run.returncode == 0, output[-4000:]
    return f"{detail['subject']}\n{detail['body']}\n{output}"


def _remap_request(console: Console, mailbox_id: int) -> dict[str, Any]:
    boxes = requests.get(
        f"{console.console_url}/api/mailboxes", headers={"Authorization": f"Bearer {console.token('viewer')}"}
    ).json()
    return dict(next(b for b in boxes if b["mailbox_id"] == mailbox_id)["remap_request"])


@pytest.mark.slow
def test_a_breaking_remap_waits_for_approval_as_a_required_action(
    console: Console, airflow_env: Any, tmp_path: Path
) -> None:
    sales, support = console.seed.mailbox_ids[:2]
    mapped = "SELECT mailbox_id, crm_user_id FROM dynamics.mailbox WHERE mailbox_id IN (%s, %s) ORDER BY mailbox_id"
    before = [(sales, CRM_USER_1), (support, CRM_USER_2)]
    assert console.query(mapped, (sales, support)) == before
    bearer = {"Authorization": f"Bearer {console.token('operator')}"}
    url = f"{console.console_url}/api/mailboxes/{support}/remap"

    # Confirmed, a remap that breaks a mapping is not applied: it waits for approval.
    asked = requests.post(url, json={"crm_user_id": str(CRM_USER_1), "confirm": True}, headers=bearer, timeout=30)
    assert asked.status_code == 200, asked.text
    assert "waits for approval in Required Actions" in asked.json()["message"]
    assert console.query(mapped, (sales, support)) == before
    first = _remap_request(console, support)
    assert (first["status"], first["requested_by"], first["decided_by"]) == ("pending", "operator", None)
    assert first["dag_run_id"]
    assert "already has mailbox sales@cronus.example" in first["reason"]
    # Where it is approved: the approval task's Required Actions tab in the Airflow UI.
    assert (first["dag_id"], first["task_id"]) == ("mailbox_remap_approval", "approve_remap")
    assert first["required_action_url"].endswith(
        f"/dags/mailbox_remap_approval/runs/{quote(first['dag_run_id'], safe='')}/tasks/approve_remap/required_actions"
    )

    # Rejected: nothing changes, the console shows who rejected it.
    output = _answer_remap(console, airflow_env, first["request_id"], "Reject", tmp_path / "reject.log")
    assert "Remap mailbox support@cronus.example to CRM user" in output
    assert f"operator rejected remap request {first['request_id']}" in output
    assert console.query(mapped, (sales, support)) == before
    rejected = _remap_request(console, support)
    assert (rejected["status"], rejected["decided_by"]) == ("rejected", "operator")

    # Approved: the remap is applied (the sales mailbox loses its user) and the console shows who approved it.
    asked = requests.post(url, json={"crm_user_id": str(CRM_USER_1), "confirm": True}, headers=bearer, timeout=30)
    assert asked.status_code == 200, asked.text
    second = _remap_request(console, support)
    assert second["request_id"] != first["request_id"] and second["status"] == "pending"
    output = _answer_remap(console, airflow_env, second["request_id"], "Approve", tmp_path / "approve.log")
    assert f"operator approved remap request {second['request_id']}" in output
    assert console.query(mapped, (sales, support)) == [(sales, None), (support, CRM_USER_1)]
    approved = _remap_request(console, support)
    assert (approved["status"], approved["decided_by"]) == ("approved", "operator") and approved["decided_at"]
    log = console.query(
        "SELECT action, changed_by FROM dynamics.mailbox_mapping_log WHERE mailbox_id = %s ORDER BY entry_no DESC"
        " LIMIT 1",
        (support,),
    )
    assert log == [("remapped", "operator")]
