"""The watcher of a DAG whose tasks keep running after a failure: it makes the DAG run end failed.

Airflow decides a DAG run's state from its leaf tasks. When tasks use ``trigger_rule="all_done"`` (a table
mapping's dependents still sync after it failed), a successful leaf would turn the run green although a
mapping failed. Airflow's documented answer is a watcher task: downstream of every task, trigger rule
``one_failed``, and it fails — so the run ends failed whenever any task failed, and the watcher is skipped
otherwise. Source: Airflow's Best Practices, "Example of watcher pattern with trigger rules"
(https://airflow.apache.org/docs/apache-airflow/stable/best-practices.html).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

FAILED_STATES = ("failed", "upstream_failed")


class RunWatcherOperator(BaseOperator):
    """Fail the DAG run when any upstream task failed, naming the failed tasks (task id, map index).

    Trigger rule ``one_failed``, no retries, no failure callback (each failed task already sent its own alert).

    :raises AirflowFailException: always, when it runs: "<n> task(s) of <dag> failed: <task ids>".
    """

    ui_color = "#f8d7da"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(trigger_rule="one_failed", retries=0, on_failure_callback=None)
        super().__init__(**kwargs)

    def execute(self, context: Context) -> None:
        ti = context["ti"]
        run_id = context["run_id"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(task for task, state in states.items() if state in FAILED_STATES)
        raise AirflowFailException(
            f"{len(failed)} task(s) of {ti.dag_id} failed in run {run_id}: {', '.join(failed)}. "
            "The other tasks ran; each failed task's log names the records and the fix."
        )


def watch(dag: DAG, task_id: str = "run_failed_if_any_task_failed") -> RunWatcherOperator:
    """Add a :class:`RunWatcherOperator` downstream of every task of ``dag`` and return it."""
    tasks = list(dag.tasks)
    watcher = RunWatcherOperator(task_id=task_id, dag=dag)
    for task in tasks:
        task >> watcher
    return watcher
