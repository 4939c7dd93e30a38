"""Approval of a mailbox remap that breaks a mapping, as an Airflow required action (no schedule).

The console triggers a run with conf ``{"request_id": <id>}`` when a confirmed remap would break an existing
mapping (one user <-> one mailbox); the run's ``approve_remap`` task waits in Required Actions. "Approve" applies
the remap, "Reject" drops it; who decided is kept with the request and shown in the console's mailbox view
(dynamics_jobqueue.operators.mailbox_remap).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from dynamics_jobqueue.operators.mailbox_remap import DAG_ID, TASK_ID, RemapApprovalOperator

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"request_id": Param(0, type="integer", description="dynamics.mailbox_remap_request id")},
    tags=["dynamics", "mailbox"],
    doc_md=__doc__,
):
    RemapApprovalOperator(task_id=TASK_ID, retries=0)
