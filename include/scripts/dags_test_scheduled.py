"""``airflow dags test`` whose DAG run is a *scheduled* run, as the DAG's cron tick would create it.

``airflow dags test`` and the REST API's trigger always create a manual run (``run_type`` manual), and crm_sync
treats a manual run as a user's request: it never skips a mapping On Hold with Inactivity Timeout
(:mod:`dynamics_jobqueue.sync.job_queue`). To see what a cron tick does without waiting for one (tests, the
idle-cost benchmark), this runs ``airflow dags test <args>`` in this process with the run created as Airflow's
scheduler creates a cron run: ``run_type`` scheduled, run id ``scheduled__<logical date>``. Everything else is
``airflow dags test``'s (tasks run in this process, no scheduler needed, the same arguments)::

    python include/scripts/dags_test_scheduled.py crm_sync
    python include/scripts/dags_test_scheduled.py crm_sync -c '{"full_sync": true}'

Run it in the Airflow environment of the DAGs (``AIRFLOW_HOME``, connections); the exit code is ``airflow dags
test``'s.
"""

from __future__ import annotations

import sys
from typing import Any


def _scheduled_dagrun(*, dag: Any, run_id: str, logical_date: Any, session: Any, **kwargs: Any) -> Any:
    """``airflow.models.dagrun.get_or_create_dagrun`` (what ``DAG.test`` calls), creating a scheduled run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    existing = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date))
    if existing:
        session.delete(existing)
        session.commit()
    return dag.create_dagrun(
        run_id=DagRun.generate_run_id(
            run_type=DagRunType.SCHEDULED, logical_date=logical_date, run_after=kwargs["run_after"]
        ),
        logical_date=logical_date,
        data_interval=kwargs["data_interval"],
        run_after=kwargs["run_after"],
        conf=kwargs["conf"],
        run_type=DagRunType.SCHEDULED,
        state=DagRunState.RUNNING,
        triggered_by=kwargs["triggered_by"],
        triggering_user_name=None,
        start_date=kwargs["start_date"] or logical_date,
        session=session,
    )


def main(argv: list[str]) -> int:
    from airflow.__main__ import main as airflow_main
    from airflow.models import dagrun

    dagrun.get_or_create_dagrun = _scheduled_dagrun  # type: ignore[assignment]
    sys.argv = ["airflow", "dags", "test", *argv]
    try:
        airflow_main()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
