"""Background posting: one DAG per job queue category (SALESPOST, PURCHPOST).

Every couple of minutes the drain posts the category's Ready job queue entries one at a time (a pool of one
slot per category plus a lock in the state store: never two documents of a category at once). Once a day at
the Batch Post time (default 18:00 Europe/London), and whenever triggered by hand with the Batch Post params,
the run first finds the open documents and queues them. Documents that cannot post end in Error with the ERP's
message and fail the drain task — the alert names each document, who queued it and why.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, MultipleCronTriggerTimetable, Param

from dynamics_jobqueue.notifiers import failure_callbacks
from dynamics_jobqueue.operators.posting import BatchPostOperator, DrainJobQueueOperator
from dynamics_jobqueue.posting.categories import PURCHPOST, SALESPOST, SHORT_NAMES
from dynamics_jobqueue.posting.schedule import PostingSchedule

SCHEDULE = PostingSchedule.from_env()

# Every param is optional in the trigger form: a text param without a value is None (JSON null), as the form
# treats an empty string as a missing required value.
BATCH_POST_PARAMS = {
    "batch_post": Param(
        "auto",
        enum=["auto", "always", "never"],
        description="auto: manual runs and the daily Batch Post run queue open documents",
    ),
    "document_types": Param(list(SHORT_NAMES), type="array", description="Order, Invoice, Credit Memo, Return Order"),
    "filter": Param(
        None, type=["null", "string"], description="OData $filter on the documents, e.g. customerNumber eq '10000'"
    ),
    "ship": Param(
        True, type="boolean", description="Ship (sales) / Receive (purchases) orders; off: invoice what was shipped"
    ),
    "invoice": Param(True, type="boolean", description="Invoice orders; off: ship only (needs the posting page)"),
    "posting_date": Param(None, type=["null", "string"], format="date", description="used by the replace options"),
    "vat_date": Param(
        None, type=["null", "string"], format="date", description="Replace VAT Date's date (default: posting_date)"
    ),
    "replace_posting_date": Param(False, type="boolean"),
    "replace_document_date": Param(False, type="boolean"),
    "replace_vat_date": Param(False, type="boolean", description="with Replace Posting Date; needs the posting page"),
    "calc_inv_discount": Param(True, type="boolean", description="calculate invoice discounts when queueing"),
    "print": Param(False, type="boolean", description="Post & Print"),
    "user_id": Param(None, type=["null", "string"], description="queue in this user's name (default: who triggered)"),
}

for category, dag_id in ((SALESPOST, "sales_background_posting"), (PURCHPOST, "purchase_background_posting")):
    with DAG(
        dag_id=dag_id,
        schedule=MultipleCronTriggerTimetable(SCHEDULE.drain_cron, SCHEDULE.batch_cron, timezone=SCHEDULE.timezone),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        params=BATCH_POST_PARAMS,
        default_args={"on_failure_callback": failure_callbacks()},
        tags=["dynamics", "posting", category],
        doc_md=__doc__,
    ) as dag:
        batch = BatchPostOperator(task_id="batch_post", category_code=category, schedule=SCHEDULE)
        # all_done: the drain posts what is queued whether Batch Post was skipped, queued everything, or failed
        # for documents it could not release (after queueing the others).
        drain = DrainJobQueueOperator(task_id="drain", category_code=category, pool=category, trigger_rule="all_done")
        batch >> drain
    globals()[dag_id] = dag
