"""Mailbox synchronization (server-side synchronization): every 5 minutes, the due mailboxes.

Each mailbox has its own next sync time (adaptive frequency, see dynamics_jobqueue.mailbox.schedule);
this DAG only wakes up often enough to honour it. Mailboxes run in parallel mapped tasks, isolated from
each other: one failing mailbox is one failed task naming the mailbox and the fix.

Test & Enable: trigger a run with conf ``{"test_and_enable": [<mailbox id>, ...]}``; it tests those mailboxes'
workloads now and enables each one that works (dynamics_jobqueue.mailbox.cycle.test_and_enable).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from dynamics_jobqueue.notifiers import failure_callbacks
from dynamics_jobqueue.operators.mailbox import MailboxSyncOperator, SelectDueMailboxesOperator

with DAG(
    dag_id="mailbox_sync",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"on_failure_callback": failure_callbacks()},
    tags=["dynamics", "mailbox"],
    doc_md=__doc__,
):
    due = SelectDueMailboxesOperator(task_id="select_due_mailboxes")
    MailboxSyncOperator.partial(task_id="sync_mailboxes", max_active_tis_per_dagrun=16).expand(mailbox_ids=due.output)
