"""Business Central webhook subscriptions for near-real-time crm_sync.

Business Central notifies changes of an entity set to a subscribed URL about 30 seconds after they happen; a
subscription expires three days after it was created or renewed, and the service drops it when the receiver
answers an error ("Working with webhooks in Dynamics 365 Business Central"). This DAG keeps one subscription per
entity set the table mappings read, pointing at the receiver in the api-server (setting
``webhook_notification_url``): it creates missing ones, renews them a day before they expire
(``bc_subscription_renew_before_s``), recreates a lost one, and deletes those no mapping needs. Every 10 minutes
by default (``bc_subscriptions_schedule``): a lost subscription costs at most that long of notifications, and
crm_sync's 30-minute schedule syncs what was missed. Entity sets without webhook support (``contacts``,
``salespeoplePurchasers`` in the standard API) are left to that schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from dynamics_jobqueue import settings
from dynamics_jobqueue.notifiers import failure_callbacks
from dynamics_jobqueue.operators.webhooks import BusinessCentralSubscriptionsOperator

SCHEDULE = settings.get("bc_subscriptions_schedule")

with DAG(
    dag_id="bc_subscriptions",
    schedule=None if SCHEDULE.strip().lower() in ("", "none") else SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "on_failure_callback": failure_callbacks(),
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
    doc_md=__doc__,
    tags=["dynamics", "crm"],
) as dag:
    BusinessCentralSubscriptionsOperator(task_id="ensure_subscriptions")
