"""On Hold with Inactivity Timeout, followed through crm_sync's tasks over the real sandbox and Postgres.

Each step runs the CrmSyncOperator task as a run of the given type would (``dag_run.run_type`` scheduled for the
cron tick, asset_triggered with the receiver's recorded events), and counts the requests the sandbox served. The
receiver app records the Business Central webhook notifications (tests/webhook_receiver.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from dynamics_jobqueue.operators.sync import CrmSyncOperator
from dynamics_jobqueue.sync import job_queue
from dynamics_jobqueue.sync.assets import erp_asset
from dynamics_jobqueue.webhooks.subscriptions import ensure_subscriptions

ON_HOLD = "On Hold with Inactivity Timeout"


@pytest.fixture
def subscribed(sync, receiver):
    """CRONUS coupled (the first synchronization), one Business Central subscription to customers."""
    sync.sandbox.admin("webhooks", {"delay_s": 1, "retry_s": 1, "max_notifications": 1000, "lifetime_s": 3 * 86400})
    first = sync.run("CURRENCY", "SALESPEOPLE", "CUSTOMER", "CONTACT", run_id="first")
    assert not any(result.failed for result in first.values())
    assert ensure_subscriptions(sync.bc, sync.state, ["customers"], receiver.url).created == ["customers"]
    return sync


def task(sync: Any, name: str, run_id: str, run_type: str = "scheduled", events: Any = ()) -> dict[str, Any]:
    """The crm_sync task of ``name`` in a run of ``run_type``; ``events`` are its triggering asset events."""
    triggering = {erp_asset(asset.split("/", 1)[1]): [extra] for asset, extra in events}
    operator = CrmSyncOperator(task_id=name.lower(), mapping_name=name, mappings_dir=str(sync.mappings_dir))
    context = {
        "params": {"full_sync": False, "full_synch_review": False, "mappings": []},
        "run_id": run_id,
        "dag_run": SimpleNamespace(run_type=run_type),
        "triggering_asset_events": triggering,
    }
    return operator.execute(context)  # type: ignore[arg-type]


def skipped(sync: Any, name: str, run_id: str) -> str:
    """The skip message of ``name``'s task in scheduled run ``run_id`` (fails the test when it ran)."""
    with pytest.raises(AirflowSkipException) as raised:
        task(sync, name, run_id)
    return str(raised.value)


def status(sync: Any, name: str) -> str:
    return job_queue.entries(sync.state)[name].status.value


def test_an_idle_mapping_is_on_hold_skipped_by_cron_ticks_and_woken_by_a_change(subscribed, receiver) -> None:
    sync = subscribed
    # A scheduled run syncs every mapping once: nothing changed, so each goes On Hold with Inactivity Timeout.
    for name in ("CURRENCY", "SALESPEOPLE", "CUSTOMER", "CONTACT"):
        task(sync, name, "tick-1")
    entries = job_queue.entries(sync.state)
    assert {name: e.status.value for name, e in entries.items()} == dict.fromkeys(
        ("CURRENCY", "SALESPEOPLE", "CUSTOMER", "CONTACT"), ON_HOLD
    )
    customer = entries["CUSTOMER"]
    assert customer.last_run_idle and customer.last_run_id == "tick-1" and customer.inactivity_timeout_min == 720
    assert customer.on_hold_until is not None

    # The next cron tick: CUSTOMER (customers subscribed, accounts watched) is skipped without a single request.
    sync.reset_stats()
    message = skipped(sync, "CUSTOMER", "tick-2")
    assert message == (
        f"CUSTOMER: On Hold with Inactivity Timeout until {customer.on_hold_until:%Y-%m-%d %H:%M:%S} UTC: a change "
        "to business_central/customers or dataverse/accounts wakes it"
    )
    assert sync.stats() == {}
    # CONTACT is on hold too, but Business Central has no webhook for contacts: it is polled.
    assert task(sync, "CONTACT", "tick-2")["to_crm"]["modified"] == 0
    assert sync.stats()["GET bc/contacts"] >= 1

    # A change in Business Central: its notification starts an asset-triggered run, which syncs the record.
    number = "10000"
    sync.erp_user.update("customers", sync.customer(number)["id"], {"city": "Woken"})
    events = receiver.take(1)
    assert [name for name, _ in events] == ["business_central/customers"]
    assert task(sync, "CUSTOMER", "woken", "asset_triggered", events)["to_crm"]["modified"] == 1
    assert sync.account(number)["address1_city"] == "Woken"
    assert status(sync, "CUSTOMER") == "Ready"  # not idle

    # Ready: the next tick syncs it (idle: on hold again), the one after skips it.
    assert task(sync, "CUSTOMER", "tick-3")["to_crm"]["modified"] == 0
    assert status(sync, "CUSTOMER") == ON_HOLD
    skipped(sync, "CUSTOMER", "tick-4")

    # A dependency that synced changes earlier in the same run: CUSTOMER is not skipped.
    currency = sync.erp("currencies", "code eq 'EUR'")[0]
    sync.erp_user.update("currencies", currency["id"], {"displayName": "Euro (EMU)"})
    assert task(sync, "CURRENCY", "tick-5")["to_crm"]["modified"] == 1
    task(sync, "CUSTOMER", "tick-5")
    assert job_queue.entries(sync.state)["CUSTOMER"].last_run_id == "tick-5"

    # Twelve hours on (the Inactivity Timeout Period): the tick syncs it again.
    skipped(sync, "CUSTOMER", "tick-6")
    sync.sql(
        "UPDATE dynamics.sync_job_queue_entry SET status_since = status_since - interval '721 minutes'"
        " WHERE mapping = 'CUSTOMER'"
    )
    sync.sql("UPDATE dynamics.bc_webhook_subscriptions SET created_at = created_at - interval '1 day'")
    sync.reset_stats()
    task(sync, "CUSTOMER", "tick-7")
    assert sync.stats()["GET bc/customers"] >= 1
    assert job_queue.entries(sync.state)["CUSTOMER"].last_run_id == "tick-7"

    # The subscription expired (webhook_subscriptions did not renew it): changes may go unnoticed, so it is polled.
    skipped(sync, "CUSTOMER", "tick-8")
    sync.sql("UPDATE dynamics.bc_webhook_subscriptions SET expires_at = now() - interval '1 second'")
    task(sync, "CUSTOMER", "tick-9")
    assert job_queue.entries(sync.state)["CUSTOMER"].last_run_id == "tick-9"


def test_manual_and_full_sync_runs_never_skip_an_on_hold_mapping(subscribed) -> None:
    sync = subscribed
    task(sync, "CUSTOMER", "tick-1")
    assert status(sync, "CUSTOMER") == ON_HOLD
    assert task(sync, "CUSTOMER", "manual", "manual")["to_crm"]["failed"] == 0
    operator = CrmSyncOperator(task_id="customer", mapping_name="CUSTOMER", mappings_dir=str(sync.mappings_dir))
    full = {"full_sync": True, "full_synch_review": False, "mappings": []}
    context = {"params": full, "run_id": "tick-full", "dag_run": SimpleNamespace(run_type="scheduled")}
    assert operator.execute(context)["to_crm"]["unchanged"] >= 5  # type: ignore[arg-type]
