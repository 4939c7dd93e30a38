"""The task: params select mappings, failed records fail it without an Airflow retry, with counts and reasons."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dynamics_jobqueue.operators.sync import CrmSyncOperator


def execute(mapping: str, **params):
    operator = CrmSyncOperator(task_id=mapping.lower(), mapping_name=mapping)
    defaults = {"full_sync": False, "full_synch_review": False, "mappings": []}
    return operator.execute({"params": {**defaults, **params}, "run_id": "task-test"})


def test_a_mapping_outside_the_runs_selection_is_skipped(sync) -> None:
    with pytest.raises(AirflowSkipException, match="CURRENCY is not in this run's mappings"):
        execute("CURRENCY", mappings=["CUSTOMER"])
    # a scheduled run: Synch. Only Coupled Records, nothing matches, nothing is created
    assert execute("CURRENCY", mappings=["currency"]) == {
        "to_crm": {
            "inserted": 0,
            "modified": 0,
            "deleted": 0,
            "unchanged": 0,
            "skipped": 47,
            "failed": 0,
            "coupled": 0,
            "uncoupled": 0,
        }
    }
    assert execute("CURRENCY", mappings=["currency"], full_synch_review=True) == {
        "to_crm": {
            "inserted": 47,
            "modified": 0,
            "deleted": 0,
            "unchanged": 0,
            "skipped": 0,
            "failed": 0,
            "coupled": 0,
            "uncoupled": 0,
        }
    }


def test_failed_records_fail_the_task_after_the_rest_is_committed(sync) -> None:
    execute("CURRENCY", full_synch_review=True)
    with pytest.raises(AirflowFailException) as caught:
        execute("CUSTOMER", full_synch_review=True)
    message = str(caught.value)
    assert message.startswith("5 record(s) failed to sync")
    assert "CUSTOMER to CRM: Inserted 0, Modified 0, Deleted 0, Unchanged 0, Skipped 0, Failed 5" in message
    assert "CUSTOMER from CRM: Inserted 2" in message  # the other direction synced and committed
    assert "(10000)" in message and "dependency not coupled: SALESPEOPLE has no coupling" in message
    assert sync.coupled("CUSTOMER") == 2


def test_wrong_credentials_fail_the_task_at_once(sync, monkeypatch) -> None:
    conn = sync.sandbox.connections()["business_central_default"]
    conn["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(conn))
    with pytest.raises(AirflowFailException, match="Check the connection's client id, secret and tenant"):
        execute("CURRENCY")
