"""The webhook_subscriptions DAG (formerly bc_subscriptions): one task per service, each skipped (and removing what
it registered) when its URL setting is empty; the Dataverse task over the real sandbox and Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.operators.webhooks import DataverseWebhookStepsOperator
from dynamics_jobqueue.webhooks.dataverse_steps import ENDPOINT_NAME, stored_steps

DAGS = Path(__file__).resolve().parents[2] / "dags"
URL = "https://airflow.example.com/dynamics-webhooks/dataverse"


def test_one_task_per_service_every_thirty_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(DAGS / "webhook_subscriptions.py"))
    assert bag.import_errors == {}
    dag = bag.dags["webhook_subscriptions"]
    assert set(dag.task_dict) == {"business_central_subscriptions", "dataverse_webhook_steps"}
    assert all(not t.upstream_task_ids for t in dag.tasks)  # independent: one service down does not hold the other
    assert dag.timetable.expression == "*/30 * * * *"


def test_the_dataverse_task_registers_the_mappings_tables_and_removes_them_without_a_url(
    sandbox, state_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL", URL)
    task = DataverseWebhookStepsOperator(task_id="dataverse_webhook_steps")
    outcome = task.execute({})
    tables = ["transactioncurrency", "systemuser", "uomschedule", "account", "contact", "product", "productpricelevel"]
    assert outcome["endpoint"] == "created" and outcome["unsupported"] == ["Delete systemuser"]
    assert len(outcome["created"]) == 3 * len(tables) - 1
    assert {s.logical_name for s in stored_steps(state_store)} == set(tables)
    again = task.execute({})
    assert (again["endpoint"], again["created"], len(again["kept"])) == ("kept", [], 3 * len(tables) - 1)

    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL", "")
    with pytest.raises(AirflowSkipException, match="1 deleted"):
        task.execute({})
    assert DataverseHook().webhook_endpoints(ENDPOINT_NAME) == []
    assert stored_steps(state_store) == []
