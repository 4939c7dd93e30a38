"""What keeping the webhooks costs an idle tenant (issue 17), counted by the sandbox over real HTTP: a steady-state
webhook_subscriptions run reads one ``GET subscriptions`` per Business Central API route and one page of the
Dataverse webhook's steps, and nothing else; a deleted step or a lost subscription is still found and recreated,
and its recovery wakes crm_sync with an asset event on the affected entity set (extra ``reason: recovered``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors
from webhook_receiver import Receiver

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.operators.webhooks import (
    RECOVERED,
    BusinessCentralSubscriptionsOperator,
    DataverseWebhookStepsOperator,
)
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.webhooks.dataverse_steps import ENDPOINT_NAME, ensure_dataverse_webhook, stored_steps
from dynamics_jobqueue.webhooks.subscriptions import ensure_subscriptions, refused_entity_sets

DV_URL = "https://airflow.example.com/dynamics-webhooks/dataverse"
CRM_SETS = list(dict.fromkeys(m.crm.entity_set for m in load_mappings()))
ERP_SETS = list(dict.fromkeys(m.erp.entity_set for m in load_mappings()))


@pytest.fixture
def receiver(sandbox: Any, state_store: Any) -> Iterator[Receiver]:
    sandbox.admin("webhooks", {"delay_s": 1, "retry_s": 1, "max_notifications": 1000, "lifetime_s": 3 * 86400})
    receiver = Receiver(state_store)
    receiver.start()
    yield receiver
    receiver.stop()


def _woken(events: OutletEventAccessors) -> list[tuple[str, dict[str, Any]]]:
    """The asset events a task added to its RECOVERED alias: ``(asset name, extra)``."""
    return [(e.dest_asset_key.name, dict(e.extra)) for e in events[RECOVERED].asset_alias_events]


def _counted(sandbox: Any) -> dict[str, int]:
    """The requests the sandbox served since the last call, by route label (``GET dataverse/sdkmessageprocessingsteps``
    -> 1)."""
    counts = {k: int(v) for k, v in sandbox.admin("stats")["by_route"].items()}
    sandbox.admin("stats/reset", {})
    return counts


def test_a_steady_state_dataverse_run_is_one_request_and_a_deleted_step_is_still_recreated(
    sandbox, state_store
) -> None:
    hook = DataverseHook()
    first = ensure_dataverse_webhook(hook, state_store, CRM_SETS, DV_URL)
    assert first.endpoint == "created" and not first.steady
    assert sum(_counted(sandbox).values()) >= 3 + len(CRM_SETS)  # endpoint, tables, messages, filters, steps...

    steady = ensure_dataverse_webhook(hook, state_store, CRM_SETS, DV_URL)
    assert _counted(sandbox) == {"GET dataverse/sdkmessageprocessingsteps": 1}
    assert steady.steady and (steady.endpoint, steady.created, steady.recovered, steady.deleted) == ("kept", [], [], [])
    assert sorted(steady.kept) == sorted(first.created) and steady.unsupported == first.unsupported

    (endpoint,) = hook.webhook_endpoints(ENDPOINT_NAME)
    update_contact = next(s for s in hook.webhook_steps(endpoint.serviceendpoint_id) if s.name.endswith("of contact"))
    hook.delete("sdkmessageprocessingsteps", update_contact.step_id)
    _counted(sandbox)
    recovered = ensure_dataverse_webhook(hook, state_store, CRM_SETS, DV_URL)
    assert not recovered.steady and len(recovered.recovered) == 1 and recovered.created == []
    assert recovered.recovered_entity_sets == ["contacts"]
    assert len(hook.webhook_steps(endpoint.serviceendpoint_id)) == len(first.created)
    _counted(sandbox)
    assert ensure_dataverse_webhook(hook, state_store, CRM_SETS, DV_URL).steady
    assert sum(_counted(sandbox).values()) == 1

    # A changed set of tables takes the full path: the dropped table's steps are deleted.
    fewer = ensure_dataverse_webhook(hook, state_store, [s for s in CRM_SETS if s != "contacts"], DV_URL)
    assert not fewer.steady and len(fewer.deleted) == 3
    assert "contact" not in {s.logical_name for s in stored_steps(state_store)}


def test_a_steady_state_business_central_run_reads_only_the_subscriptions(sandbox, state_store, receiver) -> None:
    first = ensure_subscriptions(BusinessCentralHook(), state_store, ERP_SETS, receiver.url)
    assert sorted(first.unsupported) == ["contacts", "salespeoplePurchasers"]
    _counted(sandbox)
    steady = ensure_subscriptions(BusinessCentralHook(), state_store, ERP_SETS, receiver.url)  # a new process
    # GET subscriptions on the two API routes (the sandbox labels requests outside a company "bc/companies"); the
    # refused entity sets are not asked again, so neither the company nor anything else is read.
    assert _counted(sandbox) == {"GET bc/companies": 2}
    assert sorted(steady.kept) == sorted(s for s in ERP_SETS if s not in first.unsupported)
    assert (steady.created, steady.renewed, steady.recovered, steady.deleted) == ([], [], [], [])
    assert steady.unsupported == first.unsupported  # Business Central's message, remembered

    # A day later the refused ones are asked again (refused again, remembered again).
    again = ensure_subscriptions(
        BusinessCentralHook(), state_store, ERP_SETS, receiver.url, retry_refused_after=timedelta(0)
    )
    assert sorted(again.unsupported) == ["contacts", "salespeoplePurchasers"]
    assert _counted(sandbox)["POST bc/companies"] == 2
    assert sorted(refused_entity_sets(state_store)) == ["contacts", "salespeoplePurchasers"]


def test_a_refusal_is_not_remembered_while_no_handshake_is_seen_to_work(sandbox, state_store, receiver) -> None:
    receiver.stop()  # every handshake fails: 400, like an entity set without webhooks
    down = ensure_subscriptions(BusinessCentralHook(), state_store, ERP_SETS, receiver.url)
    assert sorted(down.unsupported) == sorted(ERP_SETS) and refused_entity_sets(state_store) == {}
    receiver.start()
    up = ensure_subscriptions(BusinessCentralHook(), state_store, ERP_SETS, receiver.url)
    assert sorted(up.unsupported) == ["contacts", "salespeoplePurchasers"] and "customers" in up.created


def test_a_recovery_records_an_asset_event_on_the_affected_entity_set(
    sandbox, state_store, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__WEBHOOK_NOTIFICATION_URL", receiver.url)
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL", receiver.dataverse_url)
    sandbox.admin("dataverse-webhooks", {"delay_s": 0.2, "retry_s": 1, "allow_loopback_port": True})
    bc_task = BusinessCentralSubscriptionsOperator(task_id="business_central_subscriptions")
    dv_task = DataverseWebhookStepsOperator(task_id="dataverse_webhook_steps")
    assert bc_task.outlets == [RECOVERED] and dv_task.outlets == [RECOVERED]
    for task in (bc_task, dv_task):  # first runs and steady-state runs recover nothing: no asset event
        for _ in range(2):
            events = OutletEventAccessors()
            assert task.execute({"outlet_events": events})["woken"] == [] and _woken(events) == []

    hook = BusinessCentralHook()
    customers = next(s for r in ("api/v2.0",) for s in hook.subscriptions(r) if s.entity_set == "customers")
    sandbox.admin("webhooks/expire", {"subscriptionId": customers.subscription_id})
    events = OutletEventAccessors()
    outcome = bc_task.execute({"outlet_events": events})
    assert outcome["recovered"] == ["customers"] and outcome["woken"] == ["business_central/customers"]
    assert _woken(events) == [
        ("business_central/customers", {"source": "business_central_subscriptions", "reason": "recovered"})
    ]

    dv = DataverseHook()
    (endpoint,) = dv.webhook_endpoints(ENDPOINT_NAME)
    for step in dv.webhook_steps(endpoint.serviceendpoint_id):
        if step.name.endswith(("Update of account", "Delete of account", "Create of product")):
            dv.delete("sdkmessageprocessingsteps", step.step_id)
    events = OutletEventAccessors()
    outcome = dv_task.execute({"outlet_events": events})
    assert sorted(outcome["recovered"]) == ["Create product", "Delete account", "Update account"]
    assert sorted(_woken(events)) == [
        ("dataverse/accounts", {"source": "dataverse_webhook_steps", "reason": "recovered"}),
        ("dataverse/products", {"source": "dataverse_webhook_steps", "reason": "recovered"}),
    ]
    events = OutletEventAccessors()
    assert dv_task.execute({"outlet_events": events})["woken"] == [] and _woken(events) == []
