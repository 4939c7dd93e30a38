"""Operator extra links: each sync, posting and mailbox task links to its console page in the Airflow UI."""

from __future__ import annotations

import pytest
from airflow.sdk.types import TaskInstanceKey

from dynamics_jobqueue.console.links import task_instance_url
from dynamics_jobqueue.operators.mailbox import MailboxSyncOperator
from dynamics_jobqueue.operators.posting import BatchPostOperator, DrainJobQueueOperator
from dynamics_jobqueue.operators.sync import CrmSyncOperator
from dynamics_jobqueue.plugin import DynamicsJobQueuePlugin
from dynamics_jobqueue.posting.schedule import PostingSchedule


@pytest.fixture(autouse=True)
def _base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")


def _link(operator: object, run_id: str = "scheduled__2026-01-01T00:00:00+00:00") -> str:
    [link] = operator.operator_extra_links  # type: ignore[attr-defined]
    key = TaskInstanceKey(dag_id="d", task_id="t", run_id=run_id)
    return str(link.get_link(operator, ti_key=key))


def test_each_operator_links_to_its_console_page() -> None:
    sync = CrmSyncOperator(task_id="customer", mapping_name="CUSTOMER")
    assert _link(sync) == (
        "https://airflow.example/plugin/dynamics-sync?mapping=CUSTOMER&run_id=scheduled__2026-01-01T00%3A00%3A00%2B00%3A00"
    )
    for posting in (
        BatchPostOperator(task_id="batch", category_code="SALESPOST", schedule=PostingSchedule.from_env()),
        DrainJobQueueOperator(task_id="drain", category_code="SALESPOST"),
    ):
        assert _link(posting, "manual__1") == (
            "https://airflow.example/plugin/dynamics-job-queue-log?category=SALESPOST&run_id=manual__1"
        )
    assert (
        _link(MailboxSyncOperator(task_id="sync", mailbox_ids=[1]))
        == "https://airflow.example/plugin/dynamics-mailboxes"
    )


def test_the_plugin_registers_the_links() -> None:
    registered = {type(link).__name__ for link in DynamicsJobQueuePlugin.operator_extra_links}
    assert registered == {"SyncConsoleLink", "PostingConsoleLink", "MailboxConsoleLink"}


def test_task_instance_urls_follow_the_airflow_ui_routes() -> None:
    run_id = "manual__2026-11-30T10:00:00+00:00"
    assert task_instance_url("salespost", run_id, "drain", try_number=2) == (
        "https://airflow.example/dags/salespost/runs/manual__2026-11-30T10%3A00%3A00%2B00%3A00/tasks/drain?try_number=2"
    )
    assert task_instance_url("d", "r", "t", map_index=3) == "https://airflow.example/dags/d/runs/r/tasks/t/mapped/3"
    assert task_instance_url("d", "r", "t", map_index=-1, tab="required_actions") == (
        "https://airflow.example/dags/d/runs/r/tasks/t/required_actions"
    )
