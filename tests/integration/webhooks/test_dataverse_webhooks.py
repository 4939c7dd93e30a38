"""Dataverse webhooks end to end over real HTTP: the registration the webhook_subscriptions DAG keeps (one service
endpoint, one asynchronous PostOperation step per table and message: idempotent, a deleted step recreated,
unneeded ones deleted, a lost secret rotated), and the receiver (HttpHeader secret, malformed bodies, the
integration user's own changes, repeats, an outage) recording one asset event per delivered change.

The sandbox's asynchronous service POSTs to the receiver app in uvicorn on a loopback port (the sandbox's
``allow_loopback_port`` leniency), with a recorder in place of Airflow's asset manager."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from webhook_receiver import Receiver

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.webhooks.dataverse_steps import (
    ENDPOINT_NAME,
    HEADER,
    ensure_dataverse_webhook,
    secret_hash,
    stored_endpoints,
    stored_steps,
)

SAMPLE = Path(__file__).resolve().parents[2] / "contracts/dataverse/webhook_remote_execution_context.json"
CRM_SETS = ["accounts", "contacts", "systemusers"]


@pytest.fixture
def receiver(sandbox: Any, state_store: Any) -> Iterator[Receiver]:
    receiver = Receiver(state_store)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hook(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> DataverseHook:
    from sandbox.connections import CRM_USER_CLIENT

    sandbox.admin("dataverse-webhooks", {"delay_s": 0.2, "retry_s": 1, "allow_loopback_port": True})
    conn = sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]
    monkeypatch.setenv("AIRFLOW_CONN_CRM_USER", json.dumps(conn))
    return DataverseHook()


def _account(hook: DataverseHook) -> dict[str, Any]:
    return next(hook.iter_pages("accounts", page_size=1))[0]


def _jobs(sandbox: Any) -> dict[str, int]:
    return sandbox.admin("dataverse-webhooks")


def _known_secret(hook: DataverseHook, state_store: Any, url: str) -> str:
    """Give the registered webhook a secret the test knows (as a rotation does) and store its hash."""
    (endpoint,) = stored_endpoints(state_store)
    secret = "test-secret-" + "x" * 32
    hook.update_webhook_endpoint(endpoint.serviceendpoint_id, url, HEADER, secret)
    with state_store.transaction() as cur:
        cur.execute("UPDATE dynamics.dataverse_webhook_endpoints SET secret_sha256 = %s", (secret_hash(secret),))
    return secret


def test_registration_is_idempotent_recreates_deleted_steps_and_deletes_unneeded_ones(
    sandbox, state_store, hook, receiver
) -> None:
    first = ensure_dataverse_webhook(hook, state_store, CRM_SETS, receiver.dataverse_url)
    assert first.endpoint == "created"
    expected = [f"{m} {t}" for t in ("account", "contact", "systemuser") for m in ("Create", "Update", "Delete")]
    expected.remove("Delete systemuser")  # Dataverse has no Delete message filter for systemuser
    assert sorted(first.created) == sorted(expected) and first.unsupported == ["Delete systemuser"]
    (endpoint,) = hook.webhook_endpoints(ENDPOINT_NAME)
    live = hook.webhook_steps(endpoint.serviceendpoint_id)
    assert len(live) == 8 and {(s.mode, s.stage) for s in live} == {(1, 40)}  # asynchronous, PostOperation
    (stored,) = stored_endpoints(state_store)
    assert stored.serviceendpoint_id == endpoint.serviceendpoint_id and len(stored.secret_sha256) == 64
    assert hook.get("serviceendpoints", endpoint.serviceendpoint_id)["authvalue"] is None
    assert {(s.logical_name, s.entity_set) for s in stored_steps(state_store)} == {
        ("account", "accounts"),
        ("contact", "contacts"),
        ("systemuser", "systemusers"),
    }

    again = ensure_dataverse_webhook(hook, state_store, CRM_SETS, receiver.dataverse_url)
    assert (again.endpoint, again.created, again.deleted, sorted(again.kept)) == ("kept", [], [], sorted(expected))
    assert stored_endpoints(state_store) == [stored]  # the secret was not rotated

    update_contact = next(s for s in live if s.name.endswith("Update of contact"))
    hook.delete("sdkmessageprocessingsteps", update_contact.step_id)
    recovered = ensure_dataverse_webhook(hook, state_store, CRM_SETS, receiver.dataverse_url)
    assert (recovered.recovered, recovered.created) == (["Update contact"], [])
    assert len(hook.webhook_steps(endpoint.serviceendpoint_id)) == 8

    fewer = ensure_dataverse_webhook(hook, state_store, ["accounts"], receiver.dataverse_url)
    assert len(fewer.deleted) == 5 and sorted(fewer.kept) == ["Create account", "Delete account", "Update account"]
    assert len(hook.webhook_steps(endpoint.serviceendpoint_id)) == 3
    assert {s.logical_name for s in stored_steps(state_store)} == {"account"}
    assert len(hook.webhook_endpoints(ENDPOINT_NAME)) == 1


def test_a_lost_secret_hash_rotates_the_secret_and_the_old_one_is_refused(sandbox, state_store, hook, receiver) -> None:
    ensure_dataverse_webhook(hook, state_store, ["accounts"], receiver.dataverse_url)
    old = _known_secret(hook, state_store, receiver.dataverse_url)
    with state_store.transaction() as cur:
        cur.execute("DELETE FROM dynamics.dataverse_webhook_endpoints")  # the state store lost it
    rotated = ensure_dataverse_webhook(hook, state_store, ["accounts"], receiver.dataverse_url)
    assert rotated.endpoint == "updated" and rotated.created == [] and len(rotated.kept) == 3
    (stored,) = stored_endpoints(state_store)
    assert stored.secret_sha256 != secret_hash(old)
    body = SAMPLE.read_bytes()
    assert requests.post(receiver.dataverse_url, data=body, headers={HEADER: old}, timeout=10).status_code == 401
    account = _account(hook)
    DataverseHook("crm_user").upsert("accounts", account["accountid"], {"telephone1": "rotated"}, mode="update")
    assert [name for name, _ in receiver.take(1)] == ["dataverse/accounts"]  # the new secret reached Dataverse


def test_the_receiver_refuses_forged_and_malformed_posts_and_records_each_change_once(
    sandbox, state_store, hook, receiver, caplog
) -> None:
    ensure_dataverse_webhook(hook, state_store, ["accounts", "contacts"], receiver.dataverse_url)
    secret = _known_secret(hook, state_store, receiver.dataverse_url)
    crm_user = DataverseHook("crm_user")
    account = _account(hook)

    # The integration user's own write (what crm_sync writes) is delivered and ignored; a CRM user's is recorded.
    hook.upsert("accounts", account["accountid"], {"telephone1": "by the sync"}, mode="update")
    time.sleep(1.5)
    assert receiver.events == [] and _jobs(sandbox)["sent"] == 1
    crm_user.upsert("accounts", account["accountid"], {"telephone1": "by a user"}, mode="update")
    events = receiver.take(1)
    assert events == [
        ("dataverse/accounts", {"source": "dataverse_webhook", "message": "Update", "table": "account", "records": 1})
    ]
    with state_store.transaction() as cur:
        cur.execute("SELECT operation_id, logical_name, message FROM dynamics.dataverse_webhook_deliveries")
        ((operation_id, table, message),) = cur.fetchall()
    assert (table, message) == ("account", "Update")

    # Dataverse sending the same context again (the one more attempt after a lost answer) records nothing.
    replay = {
        **json.loads(SAMPLE.read_bytes()),
        "PrimaryEntityName": "account",
        "PrimaryEntityId": account["accountid"],
        "OperationId": operation_id,
    }
    again = requests.post(receiver.dataverse_url, json=replay, headers={HEADER: secret}, timeout=10)
    assert (again.status_code, again.json()) == (200, {"new": 0})
    # A context of a table no mapping reads is acknowledged (so Dataverse does not retry) and records nothing.
    other = {**replay, "PrimaryEntityName": "lead", "OperationId": "00000000-0000-4000-8000-000000000001"}
    assert requests.post(receiver.dataverse_url, json=other, headers={HEADER: secret}, timeout=10).status_code == 200

    with caplog.at_level(logging.WARNING, logger="dynamics_jobqueue.webhooks.receiver"):
        wrong = requests.post(receiver.dataverse_url, json=replay, headers={HEADER: "guessed"}, timeout=10)
        missing = requests.post(receiver.dataverse_url, json=replay, timeout=10)
        malformed = requests.post(receiver.dataverse_url, data=b"{not json", headers={HEADER: secret}, timeout=10)
        not_context = requests.post(receiver.dataverse_url, json={"value": []}, headers={HEADER: secret}, timeout=10)
    assert [r.status_code for r in (wrong, missing, malformed, not_context)] == [401, 401, 400, 400]
    assert receiver.events == []
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "wrong x-dynamics-jobqueue-key" in messages and "missing" in messages and "guessed" not in messages

    # Create and Delete are delivered too, each once.
    contact = crm_user.create("contacts", {"firstname": "Webhook", "lastname": "Test"})
    crm_user.delete("contacts", contact)
    events = receiver.take(2)
    assert sorted((name, extra["message"]) for name, extra in events) == [
        ("dataverse/contacts", "Create"),
        ("dataverse/contacts", "Delete"),
    ]


def test_a_receiver_outage_fails_the_system_job_and_a_503_gets_one_more_attempt(
    sandbox, state_store, hook, receiver
) -> None:
    ensure_dataverse_webhook(hook, state_store, ["accounts"], receiver.dataverse_url)
    crm_user = DataverseHook("crm_user")
    first, second = (r["accountid"] for r in next(hook.iter_pages("accounts", page_size=2)))

    # Down when Dataverse sends: no answer, the system job fails and is not sent again.
    receiver.stop()
    crm_user.upsert("accounts", first, {"telephone1": "outage"}, mode="update")
    deadline = time.monotonic() + 10
    while _jobs(sandbox)["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _jobs(sandbox)["failed"] == 1
    receiver.start()
    assert receiver.take(0, timeout=0, quiet_s=2) == []  # lost: the change-tracking safety poll must bring it

    # Up, but the asset event cannot be recorded: 503, and Dataverse's one more attempt is recorded.
    receiver.fail = 1
    crm_user.upsert("accounts", second, {"telephone1": "503"}, mode="update")
    events = receiver.take(1)
    assert [name for name, _ in events] == ["dataverse/accounts"]
    assert _jobs(sandbox)["failed"] == 1  # only the outage's job


def test_an_unreachable_state_store_is_answered_503_so_dataverse_tries_once_more(
    sandbox, state_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynamics_jobqueue.hooks.state import StateStoreHook

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "x", "schema": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_STATE_DOWN", json.dumps(conn))
    receiver = Receiver(StateStoreHook(state_conn_id="state_down"))
    receiver.start()
    try:
        answer = requests.post(receiver.dataverse_url, data=SAMPLE.read_bytes(), headers={HEADER: "x"}, timeout=30)
    finally:
        receiver.stop()
    assert answer.status_code == 503 and receiver.events == []
