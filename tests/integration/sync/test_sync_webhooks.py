"""Business Central webhooks followed through to the sync: after each notification (or its absence), the CUSTOMER
task runs as crm_sync's asset-triggered or scheduled run would, over the real sandbox and Postgres, and every
changed record reaches Dataverse exactly once - through a receiver outage, a wrong clientState, a lost
subscription and a burst of 10,000 new customers (one ``collection`` notification).

The receiver app runs in uvicorn on loopback with a recorder in place of Airflow's asset manager; the recorded
asset events become the task's ``triggering_asset_events``, as the scheduler hands them to an asset-triggered run."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from dynamics_jobqueue.operators.sync import CrmSyncOperator
from dynamics_jobqueue.sync import job_queue
from dynamics_jobqueue.sync.assets import erp_asset
from dynamics_jobqueue.webhooks.subscriptions import ensure_subscriptions


@pytest.fixture
def subscribed(sync, receiver):
    """CRONUS coupled (the first synchronization), one Business Central subscription to customers."""
    sync.sandbox.admin("webhooks", {"delay_s": 1, "retry_s": 1, "max_notifications": 1000, "lifetime_s": 3 * 86400})
    first = sync.run("CURRENCY", "SALESPEOPLE", "CUSTOMER", run_id="first")
    assert not any(result.failed for result in first.values())
    assert ensure_subscriptions(sync.bc, sync.state, ["customers"], receiver.url).created == ["customers"]
    return sync


def run_customer(sync: Any, events: list[tuple[str, dict[str, Any]]], run_id: str) -> dict[str, int]:
    """The crm_sync CUSTOMER task of a run: asset-triggered by ``events``, or scheduled when there are none.

    :returns: the to-CRM counts (the job log's inserted, modified, ... of Business Central -> Dataverse)."""
    triggering = {erp_asset(name.split("/", 1)[1]): [extra] for name, extra in events}
    operator = CrmSyncOperator(task_id="customer", mapping_name="CUSTOMER", mappings_dir=sync.mappings_dir)
    params = {"full_sync": False, "full_synch_review": False, "mappings": []}
    run_type = "asset_triggered" if events else "scheduled"
    context = {
        "params": params,
        "run_id": run_id,
        "dag_run": SimpleNamespace(run_type=run_type),
        "triggering_asset_events": triggering,
    }
    result = operator.execute(context)  # type: ignore[arg-type]
    return result["to_crm"]


#: The asset event webhook_subscriptions records when it recovered a lost subscription (operators/webhooks.py).
RECOVERED = ("business_central/customers", {"source": "business_central_subscriptions", "reason": "recovered"})


def accounts(sync: Any, number: str) -> list[dict[str, Any]]:
    return sync.crm("accounts", f"accountnumber eq '{number}'")


def test_outage_wrong_client_state_and_lost_subscription_each_sync_a_change_once(subscribed, receiver) -> None:
    sync = subscribed
    customer = {n: sync.customer(n)["id"] for n in ("10000", "20000", "30000")}

    # A receiver outage: Business Central's first delivery fails, the retry meets a 503, the next one is recorded.
    receiver.stop()
    sync.erp_user.update("customers", customer["10000"], {"city": "Outage"})
    time.sleep(2.5)
    receiver.fail = 1
    receiver.start()
    events = receiver.take(1)
    assert [name for name, _ in events] == ["business_central/customers"]
    assert run_customer(sync, events, "outage")["modified"] == 1
    assert [a["address1_city"] for a in accounts(sync, "10000")] == ["Outage"]  # one account: no twin
    assert run_customer(sync, [], "outage-scheduled")["modified"] == 0  # the safety net has nothing left to do

    # The last run was idle: CUSTOMER is On Hold with Inactivity Timeout (sync/job_queue.py) and cron ticks skip it
    # while its tables announce their changes. The two cases below are the ones where an announcement is lost.
    assert job_queue.entries(sync.state)["CUSTOMER"].status is job_queue.JobQueueStatus.ON_HOLD

    # A wrong clientState (the state store's hash no longer matches the secret Business Central sends): the
    # notification is refused (401), no event, and Business Central deletes the subscription on that answer. The
    # state store still lists it, so the cron tick skips CUSTOMER; webhook_subscriptions (every 30 minutes) finds
    # the subscription lost, recreates it and records a "recovered" asset event: that run syncs the change, once.
    sync.sql("UPDATE dynamics.bc_webhook_subscriptions SET client_state_sha256 = %s", "0" * 64)
    sync.erp_user.update("customers", customer["20000"], {"city": "Forged"})
    assert receiver.take(1, timeout=4) == []
    assert sync.bc.subscriptions("api/v2.0") == []
    with pytest.raises(AirflowSkipException, match="On Hold with Inactivity Timeout"):
        run_customer(sync, [], "forged-scheduled")
    assert [a["address1_city"] for a in accounts(sync, "20000")] != ["Forged"]
    assert ensure_subscriptions(sync.bc, sync.state, ["customers"], receiver.url).recovered == ["customers"]
    assert run_customer(sync, [RECOVERED], "forged-recovered")["modified"] == 1
    assert [a["address1_city"] for a in accounts(sync, "20000")] == ["Forged"]
    assert run_customer(sync, [], "forged-scheduled-2")["modified"] == 0  # Ready after a change: the tick runs it

    # A lost subscription (expired in Business Central): the change made meanwhile has no notification; the cron
    # tick skips CUSTOMER (On Hold again), the recovery's event syncs the change, and the next change is
    # event-driven again.
    (sub,) = sync.bc.subscriptions("api/v2.0")
    sync.sandbox.admin("webhooks/expire", {"subscriptionId": sub.subscription_id})
    sync.erp_user.update("customers", customer["30000"], {"city": "Lost"})
    assert receiver.take(1, timeout=4) == []
    with pytest.raises(AirflowSkipException, match="On Hold with Inactivity Timeout"):
        run_customer(sync, [], "lost-scheduled")
    assert ensure_subscriptions(sync.bc, sync.state, ["customers"], receiver.url).recovered == ["customers"]
    assert run_customer(sync, [RECOVERED], "lost-recovered")["modified"] == 1
    assert [a["address1_city"] for a in accounts(sync, "30000")] == ["Lost"]
    sync.erp_user.update("customers", customer["30000"], {"city": "Recovered"})
    events = receiver.take(1)
    assert [name for name, _ in events] == ["business_central/customers"]
    assert run_customer(sync, events, "recovered")["modified"] == 1
    assert [a["address1_city"] for a in accounts(sync, "30000")] == ["Recovered"]
    assert run_customer(sync, [], "recovered-scheduled")["modified"] == 0


def test_a_burst_of_10000_new_customers_is_one_event_and_one_run_syncing_each_once(subscribed, receiver) -> None:
    sync = subscribed
    # New customers reach Dataverse from an incremental run only without Synch. Only Coupled Records (BC's
    # default mappings have it: there a new customer is coupled by hand or by a Full Synch. Review).
    sync.edit_mapping("40_customer.yaml", lambda data: data.update(synch_only_coupled_records=False))
    before = sync.coupled("CUSTOMER")
    sync.sandbox.admin("generate", {"count": 10_000, "prefix": "W"})
    events = receiver.take(1, timeout=60)
    assert [(name, extra["collection"]) for name, extra in events] == [("business_central/customers", True)]
    started = time.monotonic()
    counts = run_customer(sync, events, "burst")
    elapsed = time.monotonic() - started
    assert (counts["inserted"], counts["failed"]) == (10_000, 0)
    again = run_customer(sync, [], "burst-scheduled")
    assert (again["inserted"], again["modified"]) == (0, 0)
    assert sync.coupled("CUSTOMER") == before + 10_000
    numbers = [a["accountnumber"] for a in sync.crm("accounts") if (a.get("accountnumber") or "").startswith("W")]
    assert len(numbers) == len(set(numbers)) == 10_000  # every customer once, no twin
    assert elapsed < 120, f"the burst run took {elapsed:.0f} s"
