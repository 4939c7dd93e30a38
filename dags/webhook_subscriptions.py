"""Webhook registrations for near-real-time crm_sync: Business Central subscriptions and the Dataverse webhook.

Two independent tasks, each skipped when its URL setting is empty (and then removing what it registered before):

- ``business_central_subscriptions``: Business Central notifies changes of an entity set to a subscribed URL
  about 30 seconds after they happen; a subscription expires three days after it was created or renewed, and the
  service drops it when the receiver answers an error ("Working with webhooks in Dynamics 365 Business
  Central"). The task keeps one subscription per entity set the table mappings read, pointing at the receiver in
  the api-server (setting ``webhook_notification_url``): it creates missing ones, renews them a day before they
  expire (``bc_subscription_renew_before_s``), recreates a lost one, and deletes those no mapping needs. Entity
  sets without webhook support (``contacts``, ``salespeoplePurchasers`` in the standard API) are left to the
  schedule.
- ``dataverse_webhook_steps``: one Dataverse webhook (service endpoint) pointing at the receiver
  (``dataverse_webhook_url``) and one asynchronous PostOperation step per table the mappings read and message
  (Create, Update, Delete) ("Register a WebHook"); it recreates a step deleted in Dataverse and deletes those no
  mapping needs. Dataverse makes one more attempt only on 502/503/504, so a lost event is picked up by the change
  watcher's safety poll (``crm_change_safety_poll_interval_s``).

Every 30 minutes by default (``webhook_subscriptions_schedule``): a lost subscription or step is found within the
30 minutes of the polling it replaces, and its recovery records an asset event on the entity set's asset (extra
``{"reason": "recovered"}``) so crm_sync syncs what was missed at once, even for mappings On Hold with Inactivity
Timeout. A steady-state run costs one ``GET subscriptions`` per API route and one read of the Dataverse webhook's
steps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from dynamics_jobqueue import settings
from dynamics_jobqueue.notifiers import failure_callbacks
from dynamics_jobqueue.operators.webhooks import BusinessCentralSubscriptionsOperator, DataverseWebhookStepsOperator

SCHEDULE = settings.get("webhook_subscriptions_schedule")

with DAG(
    dag_id="webhook_subscriptions",
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
    BusinessCentralSubscriptionsOperator(task_id="business_central_subscriptions")
    DataverseWebhookStepsOperator(task_id="dataverse_webhook_steps")
