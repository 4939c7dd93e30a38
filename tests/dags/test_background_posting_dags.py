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
        assert drain.trigger_rule == "none_failed"  # a skipped Batch Post still drains
        assert [t.expression for t in dag.timetable.timetables] == ["*/2 * * * *", "0 18 * * *"]
        assert dag.max_active_runs == 1 and not dag.catchup
        assert set(dag.params) >= {
            "document_types", "filter", "ship", "invoice", "posting_date", "replace_posting_date",
            "replace_document_date", "calc_inv_discount", "print",
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
    # The drain fails as an alert naming each failed document, its user and the reason; the rest posted.
    assert "2 document(s) of SALESPOST could not be posted" in output, output[-3000:]
    assert "(queued by ALICE): There is nothing to post." in output
    assert "(queued by ALICE): Posting Date is not within your range of allowed posting dates." in output
    finished = queue.list_entries(state_store, category_code="SALESPOST", statuses=[Status.FINISHED])
    assert len(finished) == 11
    assert len(list((tmp_path / "printed").glob("sales-*.pdf"))) == 11
    # The run ends failed as Airflow shows it (list, home page count, alerts), after posting the others.
    assert airflow_env.run_state("sales_background_posting") == ("failed", {"batch_post": "success", "drain": "failed"})

    purchase = airflow_env.dags_test("purchase_background_posting", {"batch_post": "always"}, extra_env=env)
    output = purchase.stdout + purchase.stderr
    assert "1 document(s) of PURCHPOST could not be posted" in output, output[-3000:]
    assert len(queue.list_entries(state_store, category_code="PURCHPOST", statuses=[Status.FINISHED])) == 8
    assert overlaps(sandbox.admin("postings")["value"]) == []
