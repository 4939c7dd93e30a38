"""Dataverse webhooks followed through to the sync: a CRM change -> the sandbox's asynchronous webhook -> the
receiver's asset event on ``dataverse/accounts`` -> the CUSTOMER task of the asset-triggered crm_sync run -> the
value in Business Central, written once; and through a receiver outage (Dataverse fails the system job and never
sends it again) the change-tracking safety poll brings the change, still written once. Real sandbox, real
Postgres, the receiver app in uvicorn with a recorder in place of Airflow's asset manager; the recorded events
become the task's ``triggering_asset_events`` as the scheduler hands them to an asset-triggered run."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dynamics_jobqueue.operators.sync import CrmSyncOperator
from dynamics_jobqueue.sync.assets import crm_asset
from dynamics_jobqueue.triggers.dataverse_changes import DataverseChangesTrigger
from dynamics_jobqueue.webhooks.dataverse_steps import ensure_dataverse_webhook


@pytest.fixture
def registered(sync, receiver):
    """CRONUS coupled (the first synchronization), the Dataverse webhook with steps on account."""
    sync.sandbox.admin("dataverse-webhooks", {"delay_s": 0.3, "retry_s": 1, "allow_loopback_port": True})
    first = sync.run("CURRENCY", "SALESPEOPLE", "CUSTOMER", run_id="first")
    assert not any(result.failed for result in first.values())
    outcome = ensure_dataverse_webhook(sync.dv, sync.state, ["accounts"], receiver.dataverse_url)
    assert sorted(outcome.created) == ["Create account", "Delete account", "Update account"]
    return sync


def run_customer(sync: Any, events: list[tuple[str, dict[str, Any]]], run_id: str) -> dict[str, int]:
    """The crm_sync CUSTOMER task of a run: asset-triggered by ``events``, or scheduled when there are none.

    :returns: the from-CRM counts (the job log's inserted, modified, ... of Dataverse -> Business Central)."""
    triggering = {crm_asset(name.split("/", 1)[1]): [extra] for name, extra in events}
    operator = CrmSyncOperator(task_id="customer", mapping_name="CUSTOMER", mappings_dir=sync.mappings_dir)
    params = {"full_sync": False, "full_synch_review": False, "mappings": []}
    result = operator.execute({"params": params, "run_id": run_id, "triggering_asset_events": triggering})
    return result["from_crm"]


class SafetyPoll:
    """The change-tracking watcher's read of ``accounts`` at its safety interval, one interval at a time."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.trigger = DataverseChangesTrigger(entity_set="accounts", interval_s=600)
        self.me = sync.dv.who_am_i().lower()
        _, _, self.link = self.trigger._read(sync.dv, None, self.me)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """The asset event the watcher fires at its next read (none when no one but the sync changed a row)."""
        changed, deleted, self.link = self.trigger._read(self.sync.dv, self.link, self.me)
        if not changed and not deleted:
            return []
        return [("dataverse/accounts", {"entity_set": "accounts", "changed": changed, "deleted": deleted})]


def phone(sync: Any, number: str) -> list[str]:
    customers = sync.bc.query("customers", filter=f"number eq '{number}'", select=["phoneNumber"])
    return [c["phoneNumber"] for page in customers for c in page.records]


def account_id(sync: Any, number: str) -> str:
    (account,) = sync.crm("accounts", f"accountnumber eq '{number}'")
    return str(account["accountid"])


def test_a_crm_change_reaches_business_central_once_through_the_webhook(registered, receiver) -> None:
    sync = registered
    poll = SafetyPoll(sync)
    sync.crm_user.upsert("accounts", account_id(sync, "10000"), {"telephone1": "0101 webhook"}, mode="update")
    events = receiver.take(1)
    assert [(name, extra["message"]) for name, extra in events] == [("dataverse/accounts", "Update")]
    assert run_customer(sync, events, "webhook")["modified"] == 1
    assert phone(sync, "10000") == ["0101 webhook"]  # one customer, the value written
    # The run's own write to the account (if any) and its writes to Business Central record no new event.
    assert receiver.take(0, timeout=0, quiet_s=1.5) == []
    # The safety poll sees the same change again: its run finds nothing left to write, nor does the schedule.
    later = poll.events()
    assert [name for name, _ in later] == ["dataverse/accounts"]
    assert run_customer(sync, later, "safety-poll")["modified"] == 0
    assert run_customer(sync, [], "scheduled")["modified"] == 0
    assert phone(sync, "10000") == ["0101 webhook"]


def test_a_receiver_outage_loses_no_change_and_syncs_none_twice(registered, receiver) -> None:
    sync = registered
    poll = SafetyPoll(sync)

    # Down when Dataverse sends: the system job fails and is never sent again; the safety poll brings the change.
    receiver.stop()
    sync.crm_user.upsert("accounts", account_id(sync, "20000"), {"telephone1": "0202 outage"}, mode="update")
    deadline = time.monotonic() + 10
    while sync.sandbox.admin("dataverse-webhooks")["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sync.sandbox.admin("dataverse-webhooks")["failed"] == 1
    receiver.start()
    assert receiver.take(0, timeout=0, quiet_s=1.5) == []
    safety = poll.events()
    assert safety and safety[0][1]["changed"] == 1
    assert run_customer(sync, safety, "after-outage")["modified"] == 1
    assert phone(sync, "20000") == ["0202 outage"]
    assert run_customer(sync, [], "after-outage-scheduled")["modified"] == 0

    # Up, but the first recording fails (503): Dataverse's one more attempt is recorded, the change synced once.
    receiver.fail = 1
    sync.crm_user.upsert("accounts", account_id(sync, "30000"), {"telephone1": "0303 retried"}, mode="update")
    events = receiver.take(1)
    assert [name for name, _ in events] == ["dataverse/accounts"]
    assert run_customer(sync, events, "retried")["modified"] == 1
    assert phone(sync, "30000") == ["0303 retried"]
    later = poll.events()  # the safety poll sees it too: nothing left to write
    assert run_customer(sync, later, "retried-safety-poll")["modified"] == 0
    assert run_customer(sync, [], "retried-scheduled")["modified"] == 0
    assert sync.sandbox.admin("dataverse-webhooks")["failed"] == 1
